"""Public pretraining of the student: a head start from labelled public data, at no privacy cost.

PATE's privacy budget is spent on the labels of the answered queries; anything the student learns from a
public labelled set before them is free. ``font_digits`` (digits rendered from fonts and pen strokes,
never MNIST; ``data/font_digits.py``) is such a set: a classifier trained only on it scores about 90% on
MNIST test (docs/generators.md). Pretraining on it and then fine-tuning on the answered queries is the
public-pretraining recipe of the DP literature, applied to the student; the report records the public
set and the pretrained student's own test score, so the gain the private labels add stays visible.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from pate_lightning.data.sources import load_split
from pate_lightning.pate.student_data import StudentDataModule

# "none", or a dataset name of data/sources.py whose training split is public and labelled
PRETRAIN_SETS = ("none", "font_digits", "font_digits_small")
PRETRAIN_BATCH_SIZE = 128  # a large public set: bigger batches than the few hundred answered queries use


def public_pretraining_set(name: str, data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The public set's training split as (N, 1, 28, 28) images in [0, 1] and (N,) labels.

    A missing cache is the data layer's one-paragraph error (it names the folder and the prepare command).
    """
    if name not in PRETRAIN_SETS[1:]:
        raise ValueError(f"unknown student.pretrain {name!r}; choose one of {PRETRAIN_SETS}")
    images, labels = load_split(name, data_dir, train=True)  # (N, 28, 28) uint8, (N,)
    return images.unsqueeze(1).float().div(255), labels.long()


def rehearsal(
    images: torch.Tensor, labels: torch.Tensor, public: tuple[torch.Tensor, torch.Tensor], ratio: float, seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The answered queries plus ``round(ratio * N)`` public images drawn without replacement (seeded).

    Fine-tuning on a few hundred answered queries alone can undo the pretraining (measured on the demo:
    85.9% after pretraining, 67.4% after 5 epochs on 438 labelled synthetic queries); keeping public
    images in the training set anchors the student while it learns the teachers' labels.

    >>> images, labels = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    >>> public = (torch.ones(10, 1, 28, 28), torch.arange(10))
    >>> mixed, mixed_labels = rehearsal(images, labels, public, 0.5, seed=0)
    >>> mixed.shape[0], int(mixed[4:].min()), mixed_labels[:4].tolist()
    (6, 1, [0, 0, 0, 0])
    """
    count = min(len(public[1]), round(ratio * len(labels)))
    if count == 0:
        return images, labels
    rows = torch.randperm(len(public[1]), generator=torch.Generator().manual_seed(seed))[:count]
    return torch.cat([images, public[0][rows]]), torch.cat([labels, public[1][rows]])


def pretrain(
    model: LightningModule, trainer: Trainer, public: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor], name: str, seed: int,
) -> dict[str, Any]:
    """Train ``model`` in place on the public set with ``trainer``; its report entry with its own test score."""
    started = time.perf_counter()
    data = StudentDataModule(*public, *test, batch_size=PRETRAIN_BATCH_SIZE, val_fraction=0.0, seed=seed)
    trainer.fit(model, datamodule=data)
    tested = trainer.test(model, datamodule=data, verbose=False)[0]
    return {
        "set": name,
        "images": len(public[1]),
        "epochs": trainer.max_epochs,
        "reads_private_data": False,
        "test_accuracy": float(tested["test/acc"]),
        "seconds": round(time.perf_counter() - started, 2),
    }
