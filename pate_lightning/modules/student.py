"""``StudentModule``: the PATE student, trained on the answered queries and their noisy labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from pate_lightning.models.classifier import UCStubModel
from pate_lightning.teachers import normalization_from_name

NUM_CLASSES = 10
# name -> a plain nn.Module mapping (B, 1, 28, 28) normalized images to (B, 10) log-probabilities
ARCHITECTURES: dict[str, type[nn.Module]] = {"ucstub": UCStubModel}


class StudentModule(LightningModule):
    """A classifier trained with Lightning on (query image, aggregated label) pairs.

    Images arrive in [0, 1]; the module applies its own normalization, recorded in its hyperparameters.
    Test metrics are the overall (micro) accuracy and the per-class accuracy (``MulticlassAccuracy(average=None)``);
    after ``trainer.test`` the per-class values are also in ``test_accuracy_per_class``.

    Args:
        architecture: network name, one of ``ARCHITECTURES`` (saferlearn's UCStubModel by default).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        normalization: ``mnist`` (mean 0.1307, std 0.3081) or ``half`` (0.5, 0.5).
    """

    def __init__(
        self, architecture: str = "ucstub", lr: float = 1e-3, weight_decay: float = 0.0, normalization: str = "mnist"
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown student architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
        if not lr > 0 or weight_decay < 0:
            raise ValueError(f"student lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        self.save_hyperparameters()
        self.normalize = normalization_from_name(normalization)
        self.net = ARCHITECTURES[architecture]()
        self.train_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.val_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_accuracy_by_class = MulticlassAccuracy(NUM_CLASSES, average=None)
        self.test_accuracy_per_class: list[float] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) images in [0, 1] -> (B, 10) log-probabilities."""
        return self.net(self.normalize(images))

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, labels = batch
        log_probs = self(images)  # (B, 10)
        loss = F.nll_loss(log_probs, labels)
        predicted = log_probs.argmax(dim=1)  # (B,)
        accuracy = getattr(self, f"{stage}_accuracy")
        accuracy(predicted, labels)
        if stage == "test":
            self.test_accuracy_by_class.update(predicted, labels)
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": accuracy}, prog_bar=stage != "test")
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        per_class = self.test_accuracy_by_class.compute()  # (10,)
        self.test_accuracy_by_class.reset()
        self.test_accuracy_per_class = per_class.tolist()
        self.log_dict({f"test/acc_class_{c}": value for c, value in enumerate(per_class)})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
