"""ktrdr data-store: the Parquet bar store: ingest, gap planning, load jobs, queries."""

__version__ = "0.1.0"
