"""Reference classifier for the agreement criterion: a ``UCStubModel`` trained on data no teacher owns.

It learns from the first half of the dataset's test split (no teacher's shard touches the test
split), is scored on the second half, and is cached at ``{run_dir}/reference/model.pth`` with a
``report.json``; a cache made with other settings is retrained.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from pate_lightning import layout
from pate_lightning.data.sources import load_split
from pate_lightning.io import load_state_dict, read_json, save_torch, sha256_file, write_json
from pate_lightning.classifiers.model import UCStubModel
from pate_lightning.classifiers.loading import NORMALIZATIONS, classify_log_probs

log = logging.getLogger(__name__)


class ReferenceClassifier(LightningModule):
    """``UCStubModel`` with NLL loss and Adam: the smallest fit that gives a usable reference.

    Args:
        lr: Adam learning rate.
    """

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = UCStubModel()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.nll_loss(self.net(images), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def _halves(dataset: str, data_dir: str | Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    images, labels = load_split(dataset, data_dir, train=False)
    x = images.unsqueeze(1).float().div(255)  # (N, 1, 28, 28) in [0, 1]
    half = len(x) // 2
    return (x[:half], labels[:half]), (x[half:], labels[half:])


def predict_labels(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Labels of images (N, 1, 28, 28) in [0, 1] under the MNIST normalization."""
    return classify_log_probs(model, NORMALIZATIONS["mnist"], images).argmax(1)


def load_or_train_reference(
    run_dir: str | Path, data_dir: str | Path, dataset: str = "mnist", epochs: int = 3, seed: int = 42,
    batch_size: int = 64,
) -> tuple[UCStubModel, dict]:
    """The cached reference classifier (eval mode) and its report; trained first when absent or stale."""
    folder = layout.reference_dir(run_dir)
    settings = {"dataset": dataset, "epochs": epochs, "seed": seed, "batch_size": batch_size, "normalization": "mnist"}
    model_file, report_file = layout.reference_model_file(run_dir), layout.reference_report_file(run_dir)
    if model_file.is_file() and report_file.is_file():
        report = read_json(report_file)
        if report.get("settings") == settings and report.get("sha256") == sha256_file(model_file):
            model = UCStubModel()
            model.load_state_dict(load_state_dict(model_file, "reference classifier"))
            return model.eval(), report
    if epochs < 1:
        raise ValueError(f"reference epochs must be >= 1, got {epochs}")
    (train_x, train_y), (test_x, test_y) = _halves(dataset, data_dir)
    started = time.perf_counter()
    with torch.random.fork_rng():  # initial weights and dropout from the seed, the caller's RNG untouched
        torch.manual_seed(seed)
        module = ReferenceClassifier()
        loader = DataLoader(
            TensorDataset(NORMALIZATIONS["mnist"](train_x), train_y), batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        trainer = Trainer(
            max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(folder),
        )
        trainer.fit(module, loader)
    model = module.net.cpu().eval()
    save_torch(model_file, model.state_dict())  # before classify_log_probs switches it to channels_last
    accuracy = float((predict_labels(model, test_x) == test_y).double().mean())
    report = {
        "settings": settings,
        "train": f"{dataset} test split [0, {len(train_x)})",
        "heldout": f"{dataset} test split [{len(train_x)}, {len(train_x) + len(test_x)})",
        "heldout_accuracy": accuracy,
        "seconds": round(time.perf_counter() - started, 3),
        "sha256": sha256_file(model_file),
    }
    write_json(report_file, report)
    log.info("reference classifier trained: held-out accuracy %.4f (%s)", accuracy, model_file)
    return model, report
