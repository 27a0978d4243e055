"""The student's settings and its training run: Lightning ``Trainer`` around ``StudentModule``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from pate_lightning.pate.label_filter import contradicted, predict_log_probs
from pate_lightning.pate.student import StudentModule
from pate_lightning.pate.semi_supervised import METHODS
from pate_lightning.pate.student_augment import WEAK_VIEWS, StrongAugment
from pate_lightning.pate.student_data import StudentDataModule
from pate_lightning.pate.student_pretrain import PRETRAIN_SETS, pretrain, rehearsal
from pate_lightning.pate.student_nets import ARCHITECTURES
from pate_lightning.classifiers.loading import NORMALIZATIONS
from pate_lightning.progress import EpochProgress


@dataclass(frozen=True)
class StudentSettings:
    """How the student is trained on the answered queries (and, for FixMatch, the unlabeled pool).

    Args:
        epochs: training epochs (FixMatch: passes over the unlabeled pool).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_size: labeled training batch size.
        val_fraction: share of the answered queries held out for validation, in [0, 1).
        augment: small random affine augmentation of supervised training batches.
        architecture: one of ``pate.student_nets.ARCHITECTURES``.
        normalization: the student's input normalization (``mnist`` or ``half``).
        method: ``supervised`` or ``fixmatch``.
        threshold: FixMatch's pseudo-label confidence threshold, in [0, 1].
        mu: FixMatch's unlabeled images per labeled image in a batch.
        unlabeled_weight: FixMatch's lambda_u.
        weak: FixMatch's weak view, one of ``student_augment.WEAK_VIEWS``: ``affine`` (a sub-pixel shift,
            resampled) or ``crop`` (a whole-pixel shift, FixMatch's pad-and-crop; no resampling blur).
        elastic: probability of an elastic distortion of an image in FixMatch's strong view (``StrongAugment``).
        test_views: test-time augmentation: a test prediction averages the class probabilities over this many
            views of kind ``weak`` (0: the image as is). The report gives the single-view accuracy beside it.
        ema_decay: decay of an exponential moving average of the weights, used for testing (0: none).
        cosine: FixMatch's cosine learning-rate decay over the run (False: constant).
        separate_weak_pass: FixMatch's weak views in their own forward pass without autograd (faster; see
            ``StudentModule``).
        pretrain: a public labelled set to train on before the answered queries (``none``, ``font_digits``).
        pretrain_epochs: passes over the public set.
        pretrain_mix: public images kept in the training set per answered query after pretraining
            (rehearsal, ``student_pretrain.rehearsal``; 0: the answered queries only).
        label_filter: drop the answered labels the public-pretrained student contradicts with at least this
            confidence (``pate.label_filter``; needs ``pretrain``; 0: keep every label).
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    val_fraction: float = 0.1
    augment: bool = False
    architecture: str = "ucstub"
    normalization: str = "mnist"
    method: str = "supervised"
    threshold: float = 0.95
    mu: int = 7
    unlabeled_weight: float = 1.0
    weak: str = "affine"
    elastic: float = 0.0
    test_views: int = 0
    ema_decay: float = 0.0
    cosine: bool = False
    separate_weak_pass: bool = False
    pretrain: str = "none"
    pretrain_epochs: int = 2
    pretrain_mix: float = 0.0
    label_filter: float = 0.0

    @property
    def description(self) -> str:
        """The method as the report and the table name it, e.g. ``fixmatch`` or ``fixmatch+pretrain:font_digits``."""
        return self.method if self.pretrain == "none" else f"{self.method}+pretrain:{self.pretrain}"

    def check(self) -> "StudentSettings":
        if self.epochs < 1 or self.batch_size < 1 or self.mu < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"student.epochs, student.batch_size and student.mu must be >= 1, student.lr > 0 and "
                             f"student.weight_decay >= 0, got {self}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"student.val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown student.architecture {self.architecture!r}; choose one of {sorted(ARCHITECTURES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown student.normalization {self.normalization!r}; choose one of {sorted(NORMALIZATIONS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown student.method {self.method!r}; choose one of {METHODS}")
        if self.weak not in WEAK_VIEWS:
            raise ValueError(f"unknown student.weak {self.weak!r}; choose one of {WEAK_VIEWS}")
        for name in ("threshold", "elastic"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"student.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.pretrain not in PRETRAIN_SETS or self.pretrain_epochs < 1 or self.pretrain_mix < 0:
            raise ValueError(f"student.pretrain must be one of {PRETRAIN_SETS}, student.pretrain_epochs >= 1 and "
                             f"student.pretrain_mix >= 0, got {self.pretrain!r}, {self.pretrain_epochs}, {self.pretrain_mix}")
        if not 0 <= self.label_filter <= 1 or (self.label_filter and self.pretrain == "none"):
            raise ValueError(f"student.label_filter must lie in [0, 1] and needs student.pretrain (the public model "
                             f"that judges the labels), got {self.label_filter} with pretrain {self.pretrain!r}")
        if self.test_views < 0:
            raise ValueError(f"student.test_views must be >= 0 (0: no test-time augmentation), got {self.test_views}")
        if self.unlabeled_weight < 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"student.unlabeled_weight must be >= 0 and student.ema_decay in [0, 1), got "
                             f"{self.unlabeled_weight}, {self.ema_decay}")
        return self


def student_module(settings: StudentSettings) -> StudentModule:
    """A fresh ``StudentModule`` with ``settings``' network, optimizer and method."""
    return StudentModule(settings.architecture, settings.lr, settings.weight_decay, settings.normalization,
                         settings.method, settings.threshold, settings.unlabeled_weight, settings.cosine,
                         settings.separate_weak_pass, settings.test_views, settings.weak)


def student_trainer(epochs: int, accelerator: str, root: Path, callbacks: Optional[list[Callback]] = None,
                    label: str = "student", logs: Optional[Path] = None) -> Trainer:
    """The student's Trainer (pretraining and training): one device, no checkpoints, a log line per epoch.

    ``logs``: a TensorBoard run ``{logs}/{label}/version_N`` (hparams, loss and accuracy per step and epoch,
    test and per-class accuracy); None: no logger.
    """
    logger = False if logs is None else TensorBoardLogger(str(logs), name=label, default_hp_metric=False)
    return Trainer(
        max_epochs=epochs, accelerator=accelerator, devices=1, logger=logger, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=False, default_root_dir=root, deterministic=False,
        # a few batches an epoch on a few hundred answers: Lightning's default 50 would log nothing
        log_every_n_steps=1, callbacks=[*(callbacks or []), EpochProgress(label)],
    )


def train_student(
    images: torch.Tensor, labels: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor], settings: StudentSettings,
    accelerator: str, seed: int, root: Path, unlabeled: Optional[torch.Tensor] = None,
    test_set: str = "the held-out part of the MNIST test set (never queried)",
    public: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    selection: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    logs: Optional[Path] = None,
) -> dict[str, Any]:
    """Train a student on (images, labels) (and ``unlabeled`` for FixMatch), test it; its report entry.

    ``unlabeled`` is ignored by the supervised method: the images only, never a label. ``public`` is the
    labelled public set of ``settings.pretrain`` (``student_pretrain.public_pretraining_set``), trained on first.
    ``selection`` is a labelled public set, disjoint from the test set, on which a study may choose among
    settings (e.g. query-pool images never asked): the final model's accuracy on it is reported as
    ``selection_accuracy``, so the test score is not what picks the winner. ``logs``: the TensorBoard folder
    (``student_trainer``).
    """
    if (public is None) != (settings.pretrain == "none"):
        raise ValueError(f"student.pretrain {settings.pretrain!r} needs its public set passed (and none needs none)")
    seed_everything(seed, verbose=False)
    answered = len(labels)
    model = student_module(settings)
    pretraining = None if public is None else pretrain(
        model, student_trainer(settings.pretrain_epochs, accelerator, root, label="student_pretraining", logs=logs),
        public, test, settings.pretrain, seed)
    dropped = torch.zeros(answered, dtype=torch.bool)
    if settings.label_filter:
        dropped = contradicted(predict_log_probs(model, images), labels, settings.label_filter)  # (answered,)
        images, labels = images[~dropped], labels[~dropped]
    if public is not None:
        images, labels = rehearsal(images, labels, public, settings.pretrain_mix, seed)
    pool = unlabeled if settings.method == "fixmatch" else None
    data = StudentDataModule(images, labels, *test, batch_size=settings.batch_size, val_fraction=settings.val_fraction,
                             augment=settings.augment, seed=seed, unlabeled=pool, mu=settings.mu,
                             weak=settings.weak, strong=StrongAugment(elastic=settings.elastic))
    callbacks: list[Callback] = [EMAWeightAveraging(decay=settings.ema_decay)] if settings.ema_decay else []
    trainer = student_trainer(settings.epochs, accelerator, root, callbacks, logs=logs)
    started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    tested = trainer.test(model, datamodule=data, verbose=False)[0]
    per_class = [round(v, 6) for v in model.test_accuracy_per_class]  # before a selection test overwrites it
    selected = {}
    if selection is not None:
        loader = DataLoader(TensorDataset(*selection), batch_size=settings.batch_size)
        selected = trainer.test(model, dataloaders=loader, verbose=False)[0]
    return {
        **asdict(settings),
        "sizes": data.sizes,
        "steps": trainer.global_step,
        "val_accuracy": metrics.get("val/acc"),
        "final_train_loss": metrics.get("train/total_loss", metrics.get("train/loss")),
        "final_mask_rate": metrics.get("train/mask_rate"),
        "test_set": test_set,
        "test_accuracy": float(tested["test/acc"]),
        "test_accuracy_single_view": float(tested["test/acc_single_view"]),  # = test_accuracy without test_views
        "test_accuracy_per_class": per_class,
        "selection_accuracy": float(selected["test/acc"]) if selected else None,
        "selection_accuracy_single_view": float(selected["test/acc_single_view"]) if selected else None,
        "seconds": round(time.perf_counter() - started, 2),
        "pretraining": None if pretraining is None else {
            **pretraining, "rehearsal_images": len(labels) - answered + int(dropped.sum())},
        # positions among the answered queries whose labels the public model contradicted (not trained on)
        "labels_dropped": dropped.nonzero().flatten().tolist(),
    }
