"""Reading the per-teacher synthetic datasets that ``predict`` (the generate stage) wrote."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.io import load_torch

LABELS_HEADER = ["index", "label", "confidence"]


@dataclass(frozen=True)
class SyntheticSet:
    """One teacher's dataset: images (N, 1, 28, 28) float32 in [0, 1], labels (N,), confidences (N,)."""

    teacher_id: int
    images: torch.Tensor
    labels: torch.Tensor
    confidences: torch.Tensor


def finished_teachers(run_dir: str | Path) -> list[int]:
    """Teachers whose ``selection_report.json`` (the generate stage's done-marker) exists, ascending."""
    return layout.find_teachers(layout.teachers_root(run_dir), lambda t: layout.selection_report_file(run_dir, t))


def read_labels(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``labels.csv`` -> labels (N,) long and confidences (N,) float64; rows must be indexed 0..N-1."""
    if not path.is_file():
        raise PateError("labels file not found; run `pate-lightning predict --config configs/generate.yaml`.", path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != LABELS_HEADER:
        raise PateError(f"header must be {','.join(LABELS_HEADER)}, got {','.join(rows[0]) if rows else 'nothing'}.", path)
    try:
        index, labels, confidences = zip(*[(int(a), int(b), float(c)) for a, b, c in rows[1:]]) if rows[1:] else ((), (), ())
    except ValueError as error:
        raise PateError(f"has a malformed row ({error}).", path) from None
    if list(index) != list(range(len(index))):
        raise PateError("index column must run 0..N-1 in order.", path)
    return torch.tensor(labels, dtype=torch.long), torch.tensor(confidences, dtype=torch.float64)


def load_synthetic(run_dir: str | Path, teacher_id: int) -> SyntheticSet:
    """Teacher ``teacher_id``'s ``synthetic_samples.pt`` and ``labels.csv``, checked against each other."""
    path = layout.synthetic_samples_file(run_dir, teacher_id)
    if not path.is_file():
        raise PateError(f"teacher {teacher_id}: synthetic samples not found; run the generate stage first.", path)
    images = load_torch(path, f"teacher {teacher_id} synthetic samples")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise PateError(f"teacher {teacher_id}: expected a tensor N x 1 x 28 x 28.", path)
    labels, confidences = read_labels(layout.labels_file(run_dir, teacher_id))
    if len(labels) != len(images):
        raise PateError(f"teacher {teacher_id}: {len(images)} images but {len(labels)} labels in labels.csv.", path)
    return SyntheticSet(teacher_id, images.float(), labels, confidences)
