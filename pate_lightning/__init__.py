"""pate-lightning: the data side of PATE with per-teacher VAEs, on PyTorch Lightning."""

__version__ = "0.1.0"
