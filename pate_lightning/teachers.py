"""Teacher classifiers on disk: saferlearn's layout ``{teachers_dir}/{id}/model.pth`` and its normalization.

Images everywhere are in [0, 1]; whoever calls a classifier applies that classifier's own
normalization, recorded with it (``report.json`` of a trained teacher, or the ``normalization``
setting for a folder brought from saferlearn).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pate_lightning.errors import PateError
from pate_lightning.io import load_state_dict
from pate_lightning.models.classifier import UCStubModel


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean/std applied to [0, 1] images before a classifier."""

    mean: float = 0.1307
    std: float = 0.3081

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


# Named presets: MNIST statistics (the seed's default) and saferlearn's local PATE script's (0.5, 0.5).
NORMALIZATIONS = {"mnist": Normalization(0.1307, 0.3081), "half": Normalization(0.5, 0.5)}


def normalization_from_name(name: str) -> Normalization:
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; choose one of {sorted(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


def classifier_path(teachers_dir: str | Path, teacher_id: int) -> Path:
    return Path(teachers_dir) / str(teacher_id) / "model.pth"


def load_classifier(teachers_dir: str | Path, teacher_id: int) -> UCStubModel:
    """Teacher ``teacher_id``'s classifier from ``{teachers_dir}/{id}/model.pth``, in eval mode."""
    path = classifier_path(teachers_dir, teacher_id)
    state = load_state_dict(path, f"teacher {teacher_id} classifier")
    model = UCStubModel()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1:2] or [str(error)]
        raise PateError(
            f"teacher {teacher_id}: state_dict does not fit saferlearn's UCStubModel ({first[0].strip()}).", path
        ) from None
    return model.eval()
