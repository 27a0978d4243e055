"""pate-lightning: the data side of PATE with per-teacher VAEs, on PyTorch Lightning.

The library API: the LightningModules, data modules and callbacks the commands are built from,
for use with a plain ``lightning.Trainer`` (docs/library.md)::

    from pate_lightning import ShardDataModule, TeacherVAEModule, KLAnnealing, VAEExport

Names are imported on first use, so ``import pate_lightning`` (and ``pate-lightning --help``) does
not pay for torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "ShardDataModule": "pate_lightning.data.datamodule",
    "LatentDataModule": "pate_lightning.candidates.latents",
    "TeacherClassifierModule": "pate_lightning.classifiers.module",
    "ClassifierExport": "pate_lightning.classifiers.export",
    "UCStubModel": "pate_lightning.classifiers.model",
    "load_classifier": "pate_lightning.classifiers.loading",
    "TeacherVAEModule": "pate_lightning.generators.module",
    "KLAnnealing": "pate_lightning.generators.kl_annealing",
    "VAEExport": "pate_lightning.generators.export",
    "CandidateGenerator": "pate_lightning.candidates.generator",
    "LabelingCallback": "pate_lightning.candidates.labeling",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'pate_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
