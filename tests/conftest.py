"""Shared fixtures: real MNIST prepared once per session (offline, via the data module's sources)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Two cores: tests share them with nothing else, but keep torch from oversubscribing.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    from pate_lightning.data.sources import prepare

    data_dir = Path(os.environ.get("PATE_TEST_DATA_DIR", REPO / "data"))
    prepare("mnist", data_dir)
    return data_dir
