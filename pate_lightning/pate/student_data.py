"""``StudentDataModule``: answered queries with their aggregated labels, the unlabeled pool, and the test set."""

from __future__ import annotations

from typing import Any, Optional

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from pate_lightning.data.augment import apply_affine, draw_affine
from pate_lightning.pate.student_augment import WEAK_VIEWS, StrongAugment, strong_view, weak_view


def _check_pairs(images: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28) or labels.shape != (images.shape[0],):
        raise ValueError(f"{what}: expected images (N, 1, 28, 28) and labels (N,), got {tuple(images.shape)}, "
                         f"{tuple(labels.shape)}")


class StudentDataModule(LightningDataModule):
    """In-memory student data: a seeded train/validation split of the answered queries, and a test set.

    With ``unlabeled`` (FixMatch), training batches are ``{"labeled": (weak view, label), "unlabeled":
    (weak view, strong view)}`` with ``mu`` unlabeled images per labeled one; an epoch is one pass over
    the unlabeled pool (the labeled set cycles). An empty pool gives ``{"labeled": ...}`` batches only.

    Args:
        images: (N, 1, 28, 28) answered query images in [0, 1].
        labels: (N,) their aggregated (noisy) labels.
        test_images: (M, 1, 28, 28) held-out images in [0, 1], never queried.
        test_labels: (M,) their true labels.
        batch_size: labeled training batch size, and the evaluation batch size.
        val_fraction: share of the answered queries kept for validation (0 for none).
        augment: small random affine augmentation of supervised training batches.
        seed: seeds the split (seed), the shuffling (seed + 1) and the augmentation (seed + 2).
        unlabeled: (U, 1, 28, 28) images the student may see without their labels (None: supervised).
        mu: unlabeled images per labeled image in a batch (FixMatch's mu).
        weak: how the weak view shifts, one of ``student_augment.WEAK_VIEWS``.
        strong: the strong view's settings.
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
        unlabeled: Optional[torch.Tensor] = None,
        mu: int = 7,
        weak: str = "affine",
        strong: StrongAugment = StrongAugment(),
    ) -> None:
        super().__init__()
        _check_pairs(images, labels, "student training data")
        _check_pairs(test_images, test_labels, "student test data")
        if unlabeled is not None:
            _check_pairs(unlabeled, torch.zeros(len(unlabeled)), "student unlabeled data")
        if len(images) == 0:
            raise ValueError("the student has no training data: no query was answered")
        if weak not in WEAK_VIEWS:
            raise ValueError(f"unknown weak view {weak!r}; choose one of {WEAK_VIEWS}")
        if batch_size < 1 or mu < 1 or not 0 <= val_fraction < 1:
            raise ValueError(f"batch_size and mu must be >= 1 and val_fraction in [0, 1), got {batch_size}, {mu}, "
                             f"{val_fraction}")
        self.save_hyperparameters(ignore=["images", "labels", "test_images", "test_labels", "unlabeled", "strong"])
        self.images, self.labels = images, labels.long()
        self.test_images, self.test_labels = test_images, test_labels.long()
        self.unlabeled = unlabeled
        self.strong = strong
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
        sizes = {"train": len(self.train_set), "val": len(self.val_set) if self.val_set else 0,
                 "test": len(self.test_images)}
        return sizes if self.unlabeled is None else {**sizes, "unlabeled": len(self.unlabeled)}

    def _shuffled(self, dataset: TensorDataset, batch_size: int, offset: int, drop_last: bool = False) -> DataLoader:
        shuffle = torch.Generator().manual_seed(self.hparams.seed + offset)
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=shuffle, drop_last=drop_last)

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        # a last batch of one image breaks batch norm in training (small_cnn): drop that one image per epoch
        # (shuffled, so a different one each time); any other remainder is kept
        single = len(self.train_set) % self.hparams.batch_size == 1 and len(self.train_set) > 1
        labeled = self._shuffled(self.train_set, self.hparams.batch_size, 1, drop_last=single)
        if self.unlabeled is None:
            return labeled
        loaders = {"labeled": labeled}
        if len(self.unlabeled):
            loaders["unlabeled"] = self._shuffled(TensorDataset(self.unlabeled),
                                                  self.hparams.mu * self.hparams.batch_size, 3,
                                                  drop_last=len(self.unlabeled) >= self.hparams.mu * self.hparams.batch_size)
        # the longer loader sets the epoch; the shorter one (usually the labeled set) starts over
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> list[DataLoader]:
        # no validation split: an empty list makes Lightning skip the validation loop
        return [DataLoader(self.val_set, batch_size=self.hparams.batch_size)] if self.val_set else []

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.test_images, self.test_labels), batch_size=self.hparams.batch_size)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is None or not self.trainer.training:
            return batch
        if isinstance(batch, dict):  # FixMatch: labeled and unlabeled images both get the weak view
            images, labels = batch["labeled"]
            weak = self.hparams.weak
            views = {"labeled": (weak_view(images, self.augmenter, weak), labels)}
            if "unlabeled" in batch:
                (pool,) = batch["unlabeled"]
                views["unlabeled"] = (weak_view(pool, self.augmenter, weak),
                                      strong_view(pool, self.augmenter, self.strong))
            return views
        images, labels = batch
        if self.hparams.augment:
            images = apply_affine(images, draw_affine(len(images), self.augmenter))  # drawn on the CPU
        return images, labels
