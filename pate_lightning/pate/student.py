"""``StudentModule``: the PATE student, supervised on the answered queries or semi-supervised with FixMatch."""

from __future__ import annotations

import math
from typing import Any, Union

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics.classification import MulticlassAccuracy

from pate_lightning.pate.semi_supervised import METHODS, fixmatch_unlabeled_loss
from pate_lightning.pate.student_augment import WEAK_VIEWS, view_averaged_log_probs
from pate_lightning.pate.student_nets import ARCHITECTURES
from pate_lightning.classifiers.loading import normalization_from_name

NUM_CLASSES = 10
Pairs = tuple[torch.Tensor, torch.Tensor]
# supervised: (images, labels); fixmatch: {"labeled": (images, labels), "unlabeled": (weak, strong)},
# the unlabeled part absent when there is no unlabeled data
TrainBatch = Union[Pairs, dict[str, Pairs]]


class StudentModule(LightningModule):
    """A classifier trained with Lightning on (query image, aggregated label) pairs.

    Images arrive in [0, 1]; the module applies its own normalization, recorded in its hyperparameters.
    Test metrics are the overall (micro) accuracy and the per-class accuracy (``MulticlassAccuracy(average=None)``);
    after ``trainer.test`` the per-class values are also in ``test_accuracy_per_class``. With ``test_views``, the
    test prediction is averaged over that many weak views of each image (test-time augmentation) and
    ``test/acc_single_view`` still scores the image as it is, so one test gives both.

    Args:
        architecture: network name, one of ``ARCHITECTURES`` (saferlearn's UCStubModel by default).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        normalization: ``mnist`` (mean 0.1307, std 0.3081) or ``half`` (0.5, 0.5).
        method: ``supervised`` (answered queries only) or ``fixmatch`` (plus the unlabeled pool).
        threshold: FixMatch's confidence a weak-view prediction needs to become a pseudo-label.
        unlabeled_weight: FixMatch's lambda_u, the weight of the unlabeled loss.
        cosine: decay the learning rate over the run as FixMatch does (lr * cos(7 pi t / 16), t from 0 to 1).
        separate_weak_pass: FixMatch's weak views in a forward pass of their own without autograd, instead of
            one pass with the labeled and strong views; batch norm then normalizes them with their own
            statistics. Measured 2.4x faster a step on this CPU (small_cnn, 32 + 2 x 224 images, 2 threads).
        test_views: weak views a test prediction averages the class probabilities over (0: the image as is).
        test_view: their kind, one of ``student_augment.WEAK_VIEWS`` (the training weak view's, so the test
            images look like the ones the student learned on).
    """

    def __init__(
        self, architecture: str = "ucstub", lr: float = 1e-3, weight_decay: float = 0.0, normalization: str = "mnist",
        method: str = "supervised", threshold: float = 0.95, unlabeled_weight: float = 1.0, cosine: bool = False,
        separate_weak_pass: bool = False, test_views: int = 0, test_view: str = "affine",
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown student architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
        if method not in METHODS:
            raise ValueError(f"unknown student method {method!r}; choose one of {METHODS}")
        if not lr > 0 or weight_decay < 0:
            raise ValueError(f"student lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        if not 0 <= threshold <= 1 or unlabeled_weight < 0:
            raise ValueError(f"student threshold must lie in [0, 1] and unlabeled_weight be >= 0, got "
                             f"{threshold}, {unlabeled_weight}")
        if test_views < 0 or test_view not in WEAK_VIEWS:
            raise ValueError(f"student test_views must be >= 0 and test_view one of {WEAK_VIEWS}, got "
                             f"{test_views}, {test_view!r}")
        self.save_hyperparameters()
        self.normalize = normalization_from_name(normalization)
        # channels-last: the same arithmetic, measured 1.5x faster a training step on one CPU thread (oneDNN)
        self.net = ARCHITECTURES[architecture]().to(memory_format=torch.channels_last)
        self.train_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.val_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_single_view_accuracy = MulticlassAccuracy(NUM_CLASSES, average="micro")
        self.test_accuracy_by_class = MulticlassAccuracy(NUM_CLASSES, average=None)
        self.test_accuracy_per_class: list[float] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) images in [0, 1] -> (B, 10) log-probabilities."""
        return self.net(self.normalize(images).contiguous(memory_format=torch.channels_last))

    def _score(self, log_probs: torch.Tensor, labels: torch.Tensor, stage: str) -> torch.Tensor:
        loss = F.nll_loss(log_probs, labels)
        predicted = log_probs.argmax(dim=1)  # (B,)
        accuracy = getattr(self, f"{stage}_accuracy")
        accuracy(predicted, labels)
        if stage == "test":
            self.test_accuracy_by_class.update(predicted, labels)
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": accuracy}, prog_bar=stage != "test")
        return loss

    def _shared_step(self, batch: Pairs, stage: str) -> torch.Tensor:
        images, labels = batch
        return self._score(self(images), labels, stage)

    def _fixmatch_step(self, batch: dict[str, Pairs]) -> torch.Tensor:
        images, labels = batch["labeled"]
        if "unlabeled" not in batch:  # no unlabeled data: exactly the supervised loss
            return self._shared_step((images, labels), "train")
        weak, strong = batch["unlabeled"]
        if self.hparams.separate_weak_pass:  # pseudo-labels are targets: no graph needed for them
            with torch.no_grad():
                weak_log_probs = self(weak)  # (U, 10)
            log_probs = self(torch.cat([images, strong]))  # (B + U, 10)
            strong_log_probs = log_probs[len(images):]
        else:
            # every view in one pass, so batch norm normalizes them together as in FixMatch; the weak views'
            # predictions are detached inside the loss (pseudo-labels are targets, not a path for gradients)
            log_probs = self(torch.cat([images, weak, strong]))  # (B + 2U, 10)
            weak_log_probs, strong_log_probs = log_probs[len(images):].chunk(2)  # (U, 10) each
        supervised = self._score(log_probs[: len(images)], labels, "train")
        unlabeled, mask = fixmatch_unlabeled_loss(weak_log_probs, strong_log_probs, self.hparams.threshold)
        loss = supervised + self.hparams.unlabeled_weight * unlabeled
        self.log_dict({"train/unlabeled_loss": unlabeled, "train/mask_rate": mask.float().mean(),
                       "train/total_loss": loss}, prog_bar=True)
        return loss

    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, dict):
            return self._fixmatch_step(batch)
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Pairs, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: Pairs, batch_idx: int) -> None:
        images, labels = batch
        log_probs = self(images)  # (B, 10)
        self.test_single_view_accuracy(log_probs.argmax(dim=1), labels)
        self.log("test/acc_single_view", self.test_single_view_accuracy)
        if self.hparams.test_views:
            # a generator per batch seeded by its index: the same views whatever ran before, global RNG untouched
            generator = torch.Generator().manual_seed(batch_idx)
            views, how = self.hparams.test_views, self.hparams.test_view
            log_probs = view_averaged_log_probs(self, images, views, generator, how)  # (B, 10)
        self._score(log_probs, labels, "test")

    def on_test_epoch_end(self) -> None:
        per_class = self.test_accuracy_by_class.compute()  # (10,)
        self.test_accuracy_by_class.reset()
        self.test_accuracy_per_class = per_class.tolist()
        self.log_dict({f"test/acc_class_{c}": value for c, value in enumerate(per_class)})

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if not self.hparams.cosine:
            return optimizer
        total = max(1, self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: math.cos(7 * math.pi * step / (16 * total)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
