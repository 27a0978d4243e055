"""A tiny run directory for the generate stage: fake MNIST, shards, random decoders and confident classifiers."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Trainer

from pate_lightning.candidates.labeling import LabelingCallback
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.candidates.latents import LatentDataModule
from pate_lightning.io import save_torch
from pate_lightning.classifiers.model import UCStubModel
from pate_lightning.stacked.layers import member_state_dict
from pate_lightning.generators.vae import Decoder, reset_members
from pate_lightning.candidates.generator import CandidateGenerator
from tests.helpers import write_fake_mnist


def write_decoder(run_dir: Path, teacher_id: int, latent_dim: int = 4, hidden: tuple = (16,)) -> Path:
    decoder = Decoder(1, latent_dim, hidden)
    reset_members(decoder, [torch.Generator().manual_seed(100 + teacher_id)])
    state = member_state_dict(decoder, 0)
    state["hidden.0.weight"] *= 3  # sharper, more varied images than a fresh init gives
    state["out.weight"] *= 30
    return save_torch(run_dir / "teacher_vaes" / f"teacher_{teacher_id}" / "decoder.pth", state)


def write_classifier(run_dir: Path, teacher_id: int, sharpness: float = 30.0) -> Path:
    """A random UCStubModel whose last layer is scaled up, so its labels vary and most are confident."""
    with torch.random.fork_rng():
        torch.manual_seed(200 + teacher_id)
        state = UCStubModel().state_dict()
    state["fc2.weight"] = state["fc2.weight"] * sharpness
    return save_torch(run_dir / "trained_nets" / str(teacher_id) / "model.pth", state)


def make_run(root: Path, teachers: tuple = (0, 1), num_teachers: int = 4) -> tuple[Path, Path]:
    """(data_dir, run_dir) with a shard file, metadata, decoders and classifiers for ``teachers``."""
    data_dir = write_fake_mnist(root / "data", train=120)
    run_dir = root / "run"
    ShardDataModule(data_dir=str(data_dir), run_dir=str(run_dir), num_teachers=num_teachers).setup()
    for teacher_id in teachers:
        write_decoder(run_dir, teacher_id)
        write_classifier(run_dir, teacher_id)
    return data_dir, run_dir


def generate(data_dir: Path, run_dir: Path, teacher_ids: list, pool_size: int = 300, batch_size: int = 128,
             data_args: dict | None = None, **labeling) -> Trainer:
    settings = {"confidence_threshold": 0.5, "min_nn_distance": 1.0, "min_diversity_distance": 1.0,
                "min_per_class": 2, "max_per_class": 40, **labeling}
    datamodule = LatentDataModule(
        data_dir=str(data_dir), run_dir=str(run_dir), teacher_ids=teacher_ids, pool_size=pool_size,
        batch_size=batch_size, **(data_args or {}),
    )
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=run_dir, callbacks=[LabelingCallback(**settings)])
    trainer.predict(CandidateGenerator(teacher_ids=teacher_ids), datamodule=datamodule, return_predictions=False)
    return trainer
