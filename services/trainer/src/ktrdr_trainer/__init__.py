"""ktrdr trainer: PyTorch training on stored bars, artifacts in the object store."""

__version__ = "0.1.0"
