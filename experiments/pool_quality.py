"""A public proxy for a synthetic pool's quality, before any vote: does a reference classifier see the asked digit?

The reference (``evaluation/reference.py``, UCStubModel) learns only the first half of the MNIST test split,
which the student never sees (it is tested on the second half), so the score reads no private data. Per pool:
the share of samples the reference labels as the class they were generated for (``agree``), and the share it
labels so with probability >= 0.9 (``confident``).

    python -m experiments.pool_quality --data_dir DATA --reference_dir RUN/reference POOL_samples.pt ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pate_lightning.classifiers.loading import NORMALIZATIONS, classify_log_probs
from pate_lightning.evaluation.reference import load_or_train_reference
from pate_lightning.io import load_torch
from pate_lightning.pate.queries import labels_path, read_generator_labels


def pool_scores(reference: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``agree`` and ``confident`` shares (above) and the per-class agreement, for images (N, 1, 28, 28) in [0, 1]."""
    with torch.no_grad():
        probs = torch.cat([classify_log_probs(reference, NORMALIZATIONS["mnist"], chunk).exp()
                           for chunk in images.split(2048)])  # (N, 10)
    hit = probs.argmax(1) == labels
    confident = hit & (probs.max(1).values >= 0.9)
    per_class = [round(float(hit[labels == c].float().mean()), 3) if (labels == c).any() else None for c in range(10)]
    return {"samples": len(labels), "agree": round(float(hit.float().mean()), 4),
            "confident": round(float(confident.float().mean()), 4), "agree_per_class": per_class}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--reference_dir", required=True, help="run dir caching the reference classifier")
    parser.add_argument("pools", nargs="+", help="{name}_samples.pt files with their {name}_labels.csv")
    args = parser.parse_args()
    reference, report = load_or_train_reference(args.reference_dir, args.data_dir)
    rows = {}
    for pool in args.pools:
        path = Path(pool)
        images = load_torch(path, "synthetic samples")
        labels = read_generator_labels(labels_path(path), len(images))
        rows[str(path)] = pool_scores(reference, images.float(), labels)
    print(json.dumps({"reference": {k: report.get(k) for k in ("heldout", "heldout_accuracy", "settings")}, "pools": rows}, indent=1))


if __name__ == "__main__":
    main()
