"""Files on disk, owned once: the atomic writer (``atomic``) and the bar store's layout,
Parquet reader and writer (``bars``, which needs pyarrow and numpy; ``atomic`` needs nothing).

The data-store writes through both, the trainer reads bars through ``bars``, and the
certificate issuer writes its keys through ``atomic``.
"""
