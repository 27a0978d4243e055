"""How many epochs should the demo's public prior train? Chosen on public data only (no shard, no teacher, no vote).

The demo's prior (configs/demo.yaml: conditional MLP VAE, latent 8, hidden 512-256, font_digits_small train
split, seed 42) is trained once; after each of ``--epochs`` it draws ``--per_class`` samples of every class,
and a judge classifier scores how many show the class they were asked for. The judge is a UCStubModel trained
on font_digits_small's *test* split (2,000 renders the prior never sees), its own accuracy measured on a fifth
of that split held out from it. Rule: the epoch count with the highest agreement (ties: fewer epochs).

    PYTHONPATH=. python -m experiments.public_prior_epochs --data_dir /tmp/pilot_data --out docs/results/public_prior_epochs.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F

from pate_lightning.classifiers.model import UCStubModel
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.data.font_digits_cache import FontDigitsSmall
from pate_lightning.generators.kl_annealing import KLAnnealing
from pate_lightning.generators.module import TeacherVAEModule

MEAN, STD = 0.1307, 0.3081


def train_judge(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int) -> tuple[UCStubModel, float]:
    """A UCStubModel on the first 4/5 of ``images`` (N, 28, 28) uint8; its accuracy on the last fifth."""
    torch.manual_seed(seed)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = len(order) * 4 // 5
    train, held = order[:cut], order[cut:]
    x = (images.unsqueeze(1).float() / 255 - MEAN) / STD  # (N, 1, 28, 28)
    model = UCStubModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        shuffled = train[torch.randperm(len(train))]
        for start in range(0, len(shuffled), 64):
            rows = shuffled[start:start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(x[rows]), labels[rows]).backward()
            optimizer.step()
    return model.eval(), agreement(model, images[held].unsqueeze(1).float() / 255, labels[held])


@torch.no_grad()
def agreement(judge: UCStubModel, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` (N, 1, 28, 28) in [0, 1] that the judge gives their ``labels``."""
    return float((judge(((images - MEAN) / STD)).argmax(1) == labels).float().mean())


class ScoreSamples(L.Callback):
    """After each epoch in ``epochs``: ``per_class`` samples a class from the prior, scored by the judge."""

    def __init__(self, judge: UCStubModel, epochs: list[int], per_class: int, seed: int) -> None:
        self.judge, self.epochs, self.per_class, self.seed = judge, set(epochs), per_class, seed
        self.scores: dict[int, float] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: TeacherVAEModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            labels = torch.arange(10).repeat_interleave(self.per_class)  # (10 * per_class,)
            pl_module.eval()
            with torch.no_grad():
                samples = pl_module.sample(len(labels), [torch.Generator().manual_seed(self.seed)], labels[None])[0]
            pl_module.train()
            self.scores[epoch] = agreement(self.judge, samples.cpu(), labels)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data", help="font_digits_small is rendered here if missing")
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 15, 20])
    parser.add_argument("--per_class", type=int, default=200)
    parser.add_argument("--judge_epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    held = FontDigitsSmall(args.data_dir, train=False, download=True)
    FontDigitsSmall(args.data_dir, train=True, download=True)
    judge, judge_accuracy = train_judge(held.data, held.targets, args.judge_epochs, args.seed)
    model = TeacherVAEModule(latent_dim=8, hidden_dims=(512, 256), lr=1e-3, weight_decay=0.0, seed=args.seed,
                             conditional=True, architecture="mlp", generator="per_teacher")
    scorer = ScoreSamples(judge, args.epochs, args.per_class, args.seed)
    with tempfile.TemporaryDirectory() as run_dir:
        data = ShardDataModule(data_dir=args.data_dir, dataset="font_digits_small", run_dir=run_dir, num_teachers=1,
                               batch_size=128, augment=True, seed=args.seed)
        trainer = L.Trainer(max_epochs=max(args.epochs), accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[KLAnnealing(kl_annealing_epochs=1), scorer])
        trainer.fit(model, datamodule=data)
    chosen = max(sorted(scorer.scores), key=lambda epoch: scorer.scores[epoch])  # ties: the first, fewer epochs
    result = {
        "rule": "the epoch count whose class-conditional samples the public judge labels as asked most often",
        "judge": "UCStubModel on font_digits_small test (4/5), accuracy on the other fifth",
        "judge_accuracy": judge_accuracy, "agreement_by_epochs": scorer.scores, "chosen_epochs": chosen,
        "per_class": args.per_class, "seconds": round(time.perf_counter() - started, 1),
        "command": "python -m experiments.public_prior_epochs --data_dir DATA --out docs/results/public_prior_epochs.json",
    }
    print(result)
    if args.out is not None:
        from pate_lightning.io import write_json

        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
