"""Root conftest: every test directory in the repo shares ktrdr's fixtures."""

pytest_plugins = ["ktrdr_shared.testing.pytest_plugin"]
