"""``StudentDataModule``: answered queries with their aggregated labels, and the held-out test half."""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from pate_lightning.data.augment import apply_affine, draw_affine


def _check_pairs(images: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28) or labels.shape != (images.shape[0],):
        raise ValueError(f"{what}: expected images (N, 1, 28, 28) and labels (N,), got {tuple(images.shape)}, "
                         f"{tuple(labels.shape)}")


class StudentDataModule(LightningDataModule):
    """In-memory student data: a seeded train/validation split of the answered queries, and a test set.

    Args:
        images: (N, 1, 28, 28) answered query images in [0, 1].
        labels: (N,) their aggregated (noisy) labels.
        test_images: (M, 1, 28, 28) held-out images in [0, 1] (the second half of the test set).
        test_labels: (M,) their true labels.
        batch_size: training and evaluation batch size.
        val_fraction: share of the answered queries kept for validation (0 for none).
        augment: small random affine augmentation of training batches.
        seed: seeds the split (seed), the shuffling (seed + 1) and the augmentation (seed + 2).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        augment: bool = False,
        seed: int = 42,
    ) -> None:
        super().__init__()
        _check_pairs(images, labels, "student training data")
        _check_pairs(test_images, test_labels, "student test data")
        if len(images) == 0:
            raise ValueError("the student has no training data: no query was answered")
        if batch_size < 1 or not 0 <= val_fraction < 1:
            raise ValueError(f"batch_size must be >= 1 and val_fraction in [0, 1), got {batch_size}, {val_fraction}")
        self.save_hyperparameters(ignore=["images", "labels", "test_images", "test_labels"])
        self.images, self.labels = images, labels.long()
        self.test_images, self.test_labels = test_images, test_labels.long()
        self.train_set: Optional[TensorDataset] = None
        self.val_set: Optional[TensorDataset] = None
        self.augmenter = torch.Generator().manual_seed(seed + 2)

    def setup(self, stage: str = "fit") -> None:
        if self.train_set is not None:
            return
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.hparams.seed))
        num_val = int(len(order) * self.hparams.val_fraction)
        val, train = order[:num_val], order[num_val:]
        self.train_set = TensorDataset(self.images[train], self.labels[train])
        self.val_set = TensorDataset(self.images[val], self.labels[val]) if num_val else None

    @property
    def sizes(self) -> dict[str, int]:
        self.setup()
        return {"train": len(self.train_set), "val": len(self.val_set) if self.val_set else 0,
                "test": len(self.test_images)}

    def train_dataloader(self) -> DataLoader:
        shuffle = torch.Generator().manual_seed(self.hparams.seed + 1)
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, generator=shuffle)

    def val_dataloader(self) -> list[DataLoader]:
        # no validation split: an empty list makes Lightning skip the validation loop
        return [DataLoader(self.val_set, batch_size=self.hparams.batch_size)] if self.val_set else []

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.test_images, self.test_labels), batch_size=self.hparams.batch_size)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if self.hparams.augment and self.trainer is not None and self.trainer.training:
            theta = draw_affine(len(images), self.augmenter)  # (B, 2, 3), drawn on the CPU
            images = apply_affine(images, theta)
        return images, labels
