"""Writes each teacher's VAE files: ``decoder.pth``, ``vae_full.pth``, ``training_report.json``, ``samples.png``."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer

from pate_lightning import layout
from pate_lightning.generators.kl_annealing import KLAnnealing
from pate_lightning.stacked.export import TeacherExport, hparams_dict, write_png_grid
from pate_lightning.generators.families import generator_entry, prior_entry
from pate_lightning.io import save_torch, sha256_file, write_marker
from pate_lightning.stacked.layers import member_state_dict
from pate_lightning.seeding import Stream, generator

SAMPLE_GRID = 64
SAMPLE_EVERY = 10  # epochs between the sample grids logged to TensorBoard while training


class VAEExport(TeacherExport):
    """Exports each teacher's VAE in the seed's layout when training ends."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        super().__init__(run_dir, tensorboard)
        self.samples: torch.Tensor | None = None  # (K, SAMPLE_GRID, 1, 28, 28), set by before_export

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        epoch = trainer.current_epoch
        if not self.writers or (epoch + 1) % SAMPLE_EVERY or not bool((pl_module.epoch_examples() > 0).any()):
            return
        with torch.no_grad():  # the same prior draws each time, so the grids show training progress
            samples = stacked_samples(pl_module)
        for k, teacher_id in enumerate(pl_module.teacher_ids):
            self.add_image(teacher_id, "samples", samples[k], epoch)

    def before_export(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.samples = stacked_samples(pl_module)

    def export(self, trainer: Trainer, pl_module: LightningModule, k: int, teacher_id: int, seconds: float) -> None:
        decoder = member_state_dict(pl_module.decoder, k)
        encoder = member_state_dict(pl_module.encoder, k)
        save_torch(layout.decoder_file(self.run_dir, teacher_id), decoder)
        save_torch(
            layout.vae_full_file(self.run_dir, teacher_id),
            {**{f"encoder.{n}": t for n, t in encoder.items()}, **{f"decoder.{n}": t for n, t in decoder.items()}},
        )
        samples = self.samples[k]
        write_png_grid(layout.vae_samples_file(self.run_dir, teacher_id), samples)
        self.add_image(teacher_id, "samples", samples, trainer.current_epoch)
        history = self.history[teacher_id]
        datamodule = trainer.datamodule
        family = pl_module.hparams.get("generator", "per_teacher")
        dataset = datamodule.hparams.dataset if datamodule is not None else "mnist"
        public_vae = pl_module.hparams.get("public_vae")
        if family == "public":
            history = []  # nothing was trained here: the public VAE's own report holds its history
        write_marker(
            layout.vae_report_file(self.run_dir, teacher_id),
            {
                "teacher_id": teacher_id,
                "epochs": len(history),
                "seconds": round(seconds, 3),
                "seed": pl_module.hparams.seed,
                "teacher_seed": [pl_module.hparams.seed, teacher_id],
                "shard_size": len(datamodule.shards[teacher_id]) if datamodule is not None else None,
                "latent_dim": pl_module.hparams.latent_dim,
                "conditional": bool(pl_module.hparams.get("conditional", False)),
                "architecture": pl_module.hparams.get("architecture", "mlp"),
                "generator": family,
                "public_vae": None if family == "per_teacher" else {"path": str(public_vae), "sha256": sha256_file(public_vae)},
                "privacy": generator_entry(family, dataset),
                "prior_privacy": None if family == "per_teacher" else prior_entry(public_vae),
                "hyperparameters": {
                    **hparams_dict(pl_module),
                    "batch_size": datamodule.hparams.batch_size if datamodule is not None else None,
                    "augment": datamodule.hparams.augment if datamodule is not None else None,
                    "kl_annealing_epochs": _annealing_epochs(trainer),
                },
                "history": history,
                "final": history[-1] if history else None,
                # DP-SGD modules add their settings, epsilon and privacy-contract entry (generators/dp/module.py)
                **(pl_module.report_extras(k) if hasattr(pl_module, "report_extras") else {}),
            },
        )


def stacked_samples(pl_module: LightningModule) -> torch.Tensor:
    """Every teacher's decoding of its own ``SAMPLE_GRID`` prior draws, in one stacked pass: (K, 64, 1, 28, 28).

    One pass for the group: decoding each teacher's grid through the whole stack and keeping one
    member cost O(K^2), 57 s of a 250-teacher export on this CPU.
    """
    gens = [generator(pl_module.hparams.seed, t, Stream.LATENT) for t in pl_module.teacher_ids]
    labels = None
    if pl_module.decoder.num_classes:  # conditional: the grid cycles through the classes
        labels = (torch.arange(SAMPLE_GRID) % pl_module.decoder.num_classes).expand(len(gens), SAMPLE_GRID)
    return pl_module.sample(SAMPLE_GRID, gens, labels).cpu()


def _annealing_epochs(trainer: Trainer) -> int | None:
    for callback in trainer.callbacks:
        if isinstance(callback, KLAnnealing):
            return callback.kl_annealing_epochs
    return None
