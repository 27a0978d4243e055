"""Writes each teacher's classifier in saferlearn's layout: ``trained_nets/{id}/model.pth`` and ``report.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch import LightningModule, Trainer

from pate_lightning import layout
from pate_lightning.stacked.export import TeacherExport, hparams_dict
from pate_lightning.data.sources import load_split
from pate_lightning.io import save_torch, write_marker
from pate_lightning.classifiers.model import UCStubModel
from pate_lightning.classifiers.loading import classify_log_probs


class ClassifierExport(TeacherExport):
    """Exports each teacher's ``UCStubModel`` state_dict and a report with its full test-set accuracy.

    The test set (10,000 images for MNIST, or the module's ``test_examples`` first ones) is read once per group and evaluated in batches at
    export time with the teacher's own normalization; ``report.json`` is written last, so its
    presence marks the teacher done (the runner skips it on a re-run).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        super().__init__(run_dir, tensorboard)
        self._test_set: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        images, labels = load_split(datamodule.hparams.dataset, datamodule.hparams.data_dir, train=False)
        limit = pl_module.hparams.get("test_examples")
        images, labels = images[:limit], labels[:limit]  # limit None: the whole test set
        self._test_set = (images.unsqueeze(1).float().div_(255), labels)  # (N, 1, 28, 28) in [0, 1], (N,)
        try:
            super().on_train_end(trainer, pl_module)
        finally:
            self._test_set = None

    def export(self, trainer: Trainer, pl_module: LightningModule, k: int, teacher_id: int, seconds: float) -> None:
        datamodule = trainer.datamodule
        state = pl_module.member_state_dict(k)
        model = UCStubModel()
        model.load_state_dict(state, strict=True)  # proves the export loads into saferlearn's class
        test_images, test_labels = self._test_set
        log_probs = classify_log_probs(model, pl_module.normalize, test_images, device=pl_module.device)  # (N, 10)
        accuracy = float((log_probs.argmax(1).cpu() == test_labels).float().mean())
        self.add_scalar(teacher_id, "test/accuracy", accuracy, trainer.current_epoch)
        classifiers = layout.classifiers_root(self.run_dir)
        save_torch(layout.classifier_file(classifiers, teacher_id), state)
        history = self.history[teacher_id]
        write_marker(
            layout.classifier_report_file(classifiers, teacher_id),
            {
                "teacher_id": teacher_id,
                "architecture": "UCStubModel",
                "epochs": len(history),
                "seconds": round(seconds, 3),
                "test_accuracy": accuracy,
                "test_examples": len(test_labels),
                "dataset": datamodule.hparams.dataset,
                "normalization": {
                    "name": pl_module.hparams.normalization,
                    "mean": pl_module.normalize.mean,
                    "std": pl_module.normalize.std,
                },
                "seed": pl_module.hparams.seed,
                "teacher_seed": [pl_module.hparams.seed, teacher_id],
                "shard_size": len(datamodule.shards[teacher_id]),
                "hyperparameters": {
                    **hparams_dict(pl_module),
                    "batch_size": datamodule.hparams.batch_size,
                    "augment": datamodule.hparams.augment,
                },
                # per epoch, on the training shard with dropout and augmentation on
                "loss_curve": [row["loss"] for row in history],
                "train_accuracy_curve": [row["accuracy"] for row in history],
                "history": history,
                "final": history[-1] if history else None,
            },
        )
