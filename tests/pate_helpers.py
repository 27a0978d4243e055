"""Tiny teacher classifiers and combined synthetic datasets written to disk for the pate tests."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from pate_lightning.classifiers.model import UCStubModel


def write_teachers(
    teachers_dir: Path, teacher_ids: Sequence[int], favourites: Optional[Sequence[int]] = None, seed: int = 0
) -> Path:
    """Random UCStubModel state_dicts at ``{teachers_dir}/{id}/model.pth``.

    With ``favourites``, teacher k's last-layer bias makes it always answer ``favourites[k]``.
    """
    for k, teacher_id in enumerate(teacher_ids):
        torch.manual_seed(seed + teacher_id)
        model = UCStubModel()
        if favourites is not None:
            with torch.no_grad():
                model.fc2.bias.zero_()
                model.fc2.bias[favourites[k]] = 1e4
        folder = Path(teachers_dir) / str(teacher_id)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "model.pth")
    return Path(teachers_dir)


def random_images(count: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))  # (N, 1, 28, 28)


def write_combined(out_dir: Path, images: torch.Tensor, labels: Optional[Sequence[int]] = None,
                   name: str = "combined") -> Path:
    """``{name}_samples.pt`` and, with labels, ``{name}_labels.csv`` as ``combine`` writes them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = out_dir / f"{name}_samples.pt"
    torch.save(images, samples)
    if labels is not None:
        rows = "".join(f"{i},{label},0.99\n" for i, label in enumerate(labels))
        (out_dir / f"{name}_labels.csv").write_text("index,label,confidence\n" + rows)
    return samples
