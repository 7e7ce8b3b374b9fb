"""Fixtures of the console's browser tests: Chromium (``browser``, ``page``, ``color_scheme``,
``page_record``), Firefox (``firefox_page``) and the whole system (``console_stack``,
``console_stack_with_key``); the api's own fixtures come from ``tests/conftest.py``.
Modules here carry ``BROWSER_MARKS`` (see ``ktrdr_api.testing_browser``)."""

from ktrdr_api.testing_browser import *  # noqa: F403 - the plugin's fixtures and hook
from ktrdr_api.testing_firefox import *  # noqa: F403
