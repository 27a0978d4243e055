"""Tiny in-memory datasets written in the layout torchvision reads (no network, no real MNIST)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pate_lightning.data.sources import write_mnist_idx


def write_fake_mnist(root: Path, train: int = 120, test: int = 40, seed: int = 0) -> Path:
    """Random blobs with labels 0..9 in MNIST's IDX layout under ``root``."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> np.ndarray:
        return (rng.random((n, 28, 28)) ** 3 * 255).astype(np.uint8)

    write_mnist_idx(
        {
            "train_images": images(train),
            "train_labels": (np.arange(train) % 10).astype(np.uint8),
            "test_images": images(test),
            "test_labels": (np.arange(test) % 10).astype(np.uint8),
        },
        root,
    )
    return root


def torch_calls(function, *args):
    """How many torch functions and tensor methods ``function(*args)`` calls: host work per call."""
    from benchmarks.dp_step_profile import CallCounter

    with CallCounter() as counter:
        function(*args)
    return counter.calls
