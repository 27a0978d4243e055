"""Base of the callbacks that own a stage's per-teacher files: history, TensorBoard runs, exports.

Each teacher gets its own TensorBoard run under ``logs/{stage}/teacher_{id}`` (so
``tensorboard --logdir logs`` compares teachers; the public prior's is ``logs/public_prior``), with
its epoch scalars, its hyperparameters and final values, and its own history; the subclass writes
the stage's files when training ends, the report last, so a report means the teacher is complete.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

from pate_lightning import layout
from pate_lightning.generators.families import stage_label
from pate_lightning.io import naming, remove_files, write_bytes


def png_bytes(images: torch.Tensor, nrow: int = 8) -> bytes:
    """A PNG grid of images (N, 1, 28, 28) in [0, 1]."""
    buffer = io.BytesIO()
    save_image(images.detach().cpu(), buffer, format="png", nrow=nrow, padding=2)
    return buffer.getvalue()


def write_png_grid(path: Path, images: torch.Tensor, nrow: int = 8) -> Path:
    return write_bytes(path, png_bytes(images, nrow))


class TeacherExport(Callback):
    """Collects ``pl_module.epoch_metrics()`` per teacher and epoch; subclasses export the files.

    Args:
        run_dir: the run directory.
        tensorboard: write one TensorBoard run per teacher under ``logs/{stage}/``.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.tensorboard = tensorboard
        self.history: dict[int, list[dict[str, float]]] = {}
        self.writers: dict[int, SummaryWriter] = {}
        self.logs: dict[int, Path] = {}  # each teacher's TensorBoard folder, named when a write to it fails
        self.started = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()
        # a group resumed from its checkpoint keeps the epochs it had (load_state_dict ran first)
        self.history = {t: self.history.get(t, []) for t in pl_module.teacher_ids}
        if self.tensorboard:
            dataset = trainer.datamodule.hparams.get("dataset", "") if trainer.datamodule is not None else ""
            name = stage_label(pl_module.stage, dataset)
            self.logs = {t: layout.logs_dir(self.run_dir, name, t) for t in pl_module.teacher_ids}
            if trainer.global_step == 0:  # a fresh start (not a resume): an earlier run's curves would merge into this one's
                for folder in self.logs.values():
                    remove_files(folder, "events.out.tfevents.*")
            self.writers = {}
            for t, folder in self.logs.items():
                with naming(folder):
                    self.writers[t] = SummaryWriter(str(folder))

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {int(t): rows for t, rows in state_dict["history"].items()}

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = pl_module.epoch_metrics()
        epoch = trainer.current_epoch
        trained = pl_module.epoch_examples() > 0  # (K,)
        for k, teacher_id in enumerate(pl_module.teacher_ids):
            if not trained[k]:
                continue  # no step on this teacher's data (the `public` family): no loss to record
            row = {"epoch": epoch, **{name: float(values[k]) for name, values in metrics.items()}}
            self.history[teacher_id].append(row)
            for name, value in row.items():
                if name != "epoch":
                    self.add_scalar(teacher_id, f"train/{name}", value, epoch)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = time.perf_counter() - self.started
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            self.before_export(trainer, pl_module)
            for k, teacher_id in enumerate(pl_module.teacher_ids):
                self.export(trainer, pl_module, k, teacher_id, seconds / len(pl_module.teacher_ids))
        pl_module.train(was_training)
        for teacher_id, writer in self.writers.items():
            history = self.history.get(teacher_id) or [{}]
            final = {f"final/{name}": value for name, value in history[-1].items() if name != "epoch"}
            with naming(self.logs[teacher_id]):
                # run_name ".": the hparams go into the teacher's own run, not a sub-run TensorBoard lists apart
                writer.add_hparams(tensorboard_hparams(pl_module), final or {"final/epochs": 0.0}, run_name=".")
                writer.close()
        self.writers = {}

    def add_scalar(self, teacher_id: int, tag: str, value: float, step: int) -> None:
        if teacher_id in self.writers:
            with naming(self.logs[teacher_id]):
                self.writers[teacher_id].add_scalar(tag, value, step)

    def add_image(self, teacher_id: int, tag: str, images: torch.Tensor, step: int) -> None:
        if teacher_id in self.writers:
            with naming(self.logs[teacher_id]):
                self.writers[teacher_id].add_image(tag, make_grid(images.detach().cpu(), nrow=8), step)

    def before_export(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Work shared by all teachers' exports, done once per group (eval mode, no grad)."""

    def export(self, trainer: Trainer, pl_module: LightningModule, k: int, teacher_id: int, seconds: float) -> None:
        raise NotImplementedError


def tensorboard_hparams(pl_module: LightningModule) -> dict[str, Any]:
    """``hparams_dict`` in the types TensorBoard's hparams plugin takes (lists and None as text)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams_dict(pl_module).items()}


def hparams_dict(pl_module: LightningModule) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in pl_module.hparams.items() if k != "teacher_ids" and not k.startswith("_")}
