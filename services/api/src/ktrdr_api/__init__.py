"""ktrdr api: the REST gateway: REST in, subjects out."""

__version__ = "0.1.0"
