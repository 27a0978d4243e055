"""What carries signal under DP-SGD? A few real-MNIST teachers (240 records each), variants at one epsilon.

Each variant trains the same teachers (stacked) and scores every teacher's VAE with public data only
(MNIST test split; the package's reference classifier learns its first half, scoring uses the second):
- ``recon``: reconstruction BCE (nats, summed over pixels) of held-out test images at the posterior mean;
  the "mean image" of a shard (pixel means: the least a model can learn) is the row to beat;
- ``recon_acc``: the reference classifier's accuracy on those reconstructions (does a digit stay itself?);
- ``confident``: share of 1000 prior samples the reference classifies with probability >= 0.9, and
  ``classes``: how many classes hold >= 2% of those (digit-like and diverse samples).
A proxy only: no student is trained here.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/dp_sgd_signal.py --data_dir /work/main/data --out experiments/dp_sgd_signal.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer

from pate_lightning.generators.kl_annealing import KLAnnealing
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.data.poisson import PoissonShardDataModule
from pate_lightning.data.sources import load_split
from pate_lightning.generators.dp.module import DPTeacherVAEModule
from pate_lightning.generators.module import TeacherVAEModule
from pate_lightning.evaluation.reference import load_or_train_reference
from pate_lightning.classifiers.loading import NORMALIZATIONS, classify_log_probs

TEACHERS = [0, 1, 2, 3]
SMALL = dict(latent_dim=16, hidden_dims=(256, 128))
TINY = dict(latent_dim=8, hidden_dims=(32,))


def variants(epsilon: float, epochs: int) -> list[dict]:
    def dp(trainable: str, batch: int, lr: float, eps: float = epsilon, noise: float | None = None) -> dict:
        settings = dict(target_epsilon=None if noise else eps, noise_multiplier=noise, delta=1e-5, max_grad_norm=1.0)
        return {"dp": {**settings, "trainable": (trainable,)}, "batch": batch, "lr": lr, "epochs": epochs}

    return [
        {"name": "untrained", "epochs": 0},
        {"name": "non-DP, all, batch 32", "epochs": epochs},
        {"name": "DP all, rate 32/240, lr 1e-3", **dp("all", 32, 1e-3)},
        {"name": "DP all, rate 32/240, lr 3e-3", **dp("all", 32, 3e-3)},
        {"name": "DP all, rate 32/240, lr 1e-2", **dp("all", 32, 1e-2)},
        {"name": "DP decoder biases+last, rate 32/240, lr 1e-2", **dp("decoder_biases_last", 32, 1e-2)},
        {"name": "DP decoder, rate 32/240, lr 3e-3", **dp("decoder", 32, 3e-3)},
        {"name": f"DP all, rate 120/240 ({2 * epochs} steps), lr 3e-3", **dp("all", 120, 3e-3)},
        {"name": "DP all, rate 32/240, lr 3e-3, epsilon 2", **dp("all", 32, 3e-3, 2.0)},
        # where does signal start? larger epsilons, and clipping with almost no noise
        {"name": "DP all, rate 32/240, lr 3e-3, epsilon 50", **dp("all", 32, 3e-3, 50.0)},
        {"name": "DP all, rate 32/240, lr 3e-3, epsilon 500", **dp("all", 32, 3e-3, 500.0)},
        {"name": "clip only (noise 0.01), all, rate 32/240, lr 3e-3", **dp("all", 32, 3e-3, noise=0.01)},
        # fewer parameters: less total noise (its norm grows with sqrt(d)): 52k parameters per teacher instead of 475k
        {"name": "tiny VAE (32 hidden, latent 8): non-DP", "epochs": epochs, "arch": TINY},
        {"name": "tiny VAE (32 hidden, latent 8): DP all, rate 32/240, lr 3e-3", **dp("all", 32, 3e-3), "arch": TINY},
        {"name": "tiny VAE (32 hidden, latent 8): DP all, rate 120/240, lr 1e-2", **dp("all", 120, 1e-2), "arch": TINY},
    ]


def train(variant: dict, data_dir: str, run_dir: Path) -> tuple[TeacherVAEModule, float]:
    common = dict(data_dir=data_dir, run_dir=str(run_dir), num_teachers=250, teacher_ids=TEACHERS, augment=False, seed=42)
    lr = variant.get("lr", 1e-3)
    if "dp" in variant:
        data = PoissonShardDataModule(batch_size=variant["batch"], **common)
        model = DPTeacherVAEModule(teacher_ids=TEACHERS, **variant.get("arch", SMALL), lr=lr, weight_decay=0.0, seed=42, **variant["dp"])
    else:
        data = ShardDataModule(batch_size=32, **common)
        model = TeacherVAEModule(teacher_ids=TEACHERS, **variant.get("arch", SMALL), lr=lr, seed=42)
    started = time.perf_counter()
    if variant["epochs"]:
        trainer = Trainer(
            max_epochs=variant["epochs"], accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir, callbacks=[KLAnnealing(5)],
        )
        trainer.fit(model, datamodule=data)
    return model, time.perf_counter() - started


@torch.no_grad()
def score(model: TeacherVAEModule, test: torch.Tensor, labels: torch.Tensor, reference: torch.nn.Module) -> dict:
    """Per teacher: recon of held-out test images, the reference's accuracy on them, sample confidence."""
    model.eval()
    x = test.expand(len(TEACHERS), *test.shape)  # (K, N, 784)
    mu, _ = model.encoder(x)
    logits = model.decoder.logits(mu)  # (K, N, 784)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean(-1)  # (K,)
    mnist = NORMALIZATIONS["mnist"]
    gens = [torch.Generator().manual_seed(1000 + t) for t in TEACHERS]
    samples = model.sample(1000, gens)  # (K, 1000, 1, 28, 28)
    out = {"recon": recon.tolist(), "recon_acc": [], "confident": [], "classes": []}
    for k in range(len(TEACHERS)):
        predicted = classify_log_probs(reference, mnist, torch.sigmoid(logits[k]).view(-1, 1, 28, 28)).argmax(1)
        out["recon_acc"].append(float((predicted == labels).float().mean()))
        probs = classify_log_probs(reference, mnist, samples[k]).exp()  # (1000, 10)
        confident = probs.max(1).values >= 0.9
        counts = torch.bincount(probs.argmax(1)[confident], minlength=10)
        out["confident"].append(float(confident.float().mean()))
        out["classes"].append(int((counts >= 0.02 * max(1, int(confident.sum()))).sum()) if confident.any() else 0)
    return out


def mean_image_recon(data_dir: str, run_dir: Path, test: torch.Tensor) -> list[float]:
    data = ShardDataModule(data_dir=data_dir, run_dir=str(run_dir), num_teachers=250, teacher_ids=TEACHERS, seed=42)
    data.setup("fit")
    out = []
    for t in TEACHERS:
        mean = data.shard_images(t).flatten(1).mean(0).clamp(1e-4, 1 - 1e-4)  # (784,)
        out.append(float(F.binary_cross_entropy(mean.expand_as(test), test, reduction="none").sum(-1).mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="run only the variants whose name contains one of these")
    parser.add_argument("--test_images", type=int, default=1000)
    parser.add_argument("--reference_dir", default="/tmp/pate-dp-signal", help="where the reference classifier is cached")
    parser.add_argument("--out", default="experiments/dp_sgd_signal.json")
    args = parser.parse_args()
    images, labels = load_split("mnist", args.data_dir, train=False)
    # the reference classifier learns the first half of the test split; scoring uses the second
    held_out = slice(len(images) // 2, len(images) // 2 + args.test_images)
    test = images[held_out].flatten(1).float() / 255  # (N, 784)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        reference, reference_report = load_or_train_reference(Path(args.reference_dir), args.data_dir)
        print(f"reference classifier: held-out accuracy {reference_report['heldout_accuracy']:.4f}", flush=True)
        results.append({"name": "mean image of the shard (non-DP reference)", "recon": mean_image_recon(args.data_dir, Path(tmp), test)})
        for variant in variants(args.epsilon, args.epochs):
            if args.only and not any(part in variant["name"] for part in args.only):
                continue
            model, seconds = train(variant, args.data_dir, Path(tmp))
            row = {"name": variant["name"], "seconds": round(seconds, 1), **score(model, test, labels[held_out], reference)}
            if "dp" in variant:
                report = model.report_extras(0)["dp_sgd"]
                row.update(noise_multiplier=report["noise_multiplier"], steps=report["steps"],
                           epsilon=report["epsilon"]["value"], sample_rate=report["sample_rate"])
            results.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"epsilon": args.epsilon, "delta": 1e-5, "epochs": args.epochs, "teachers": TEACHERS,
                                          "reference_heldout_accuracy": reference_report["heldout_accuracy"], "rows": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
