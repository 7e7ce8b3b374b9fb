"""ktrdr ib-connector: the one IB connection, pacing, chunking, bar batches and events."""

__version__ = "0.1.0"
