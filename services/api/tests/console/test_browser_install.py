"""A browser test on a machine without the browser fails saying what to install (no skip)."""

from __future__ import annotations

import pytest
from ktrdr_api.testing_browser import CHROMIUM, require_browser
from ktrdr_api.testing_firefox import FIREFOX

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("path", "package"), [(CHROMIUM, "chromium"), (FIREFOX, "firefox-esr")])
def test_a_missing_browser_fails_naming_the_apt_package(path: str, package: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=f"apt-get install {package}"):
        require_browser(f"/nonexistent{path}", package)
