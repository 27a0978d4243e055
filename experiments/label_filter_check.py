"""How well a public-pretrained student finds the wrong answered labels of row (b): docs/results/label_filter_check.json.

Pretrains the student on font_digits alone (as ``train_student`` does with ``pretrain: font_digits``), then
draws fresh-noise Confident-GNMax answers for row (b) from the votes cache (``student_repeats.one_run``'s
path) and counts, per confidence threshold, the labels the public model contradicts and how many of them are
wrong on MNIST's public truth. A diagnostic of the filter (``pate.label_filter``), not a private release:
the truth of the query pool is public; nothing is trained on it.

Usage:
    PYTHONPATH=$PWD python experiments/label_filter_check.py --votes runs/rows_merged/pate/votes_mnist_test_papers.pt \
        --data_dir data --trials 12 --out docs/results/label_filter_check.json
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch import seed_everything

from experiments import student_repeats as repeats
from pate_lightning.io import write_json
from pate_lightning.pate.command import label_queries
from pate_lightning.pate.label_filter import contradicted, predict_log_probs
from pate_lightning.pate.student_pretrain import pretrain
from pate_lightning.pate.student_training import student_module, student_trainer
from pate_lightning.privacy import ReleaseSettings, noise_source

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", required=True)
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--out", default="docs/results/label_filter_check.json")
    args = parser.parse_args(argv)
    data = repeats._data(args.data_dir)
    settings = repeats.VARIANTS["fix120_filter"][0]
    mechanism, asked_count = repeats.ROWS["b"]
    trials = []
    for trial in range(args.trials):
        seed = secrets.randbits(31)  # the pretraining's seed and the query sample, recorded
        seed_everything(seed, verbose=False)
        model = student_module(settings)  # as train_student builds and pretrains it
        public_only = pretrain(model, student_trainer(settings.pretrain_epochs, "cpu", Path(args.out).parent / "lightning"),
                               data["public"], data["test"], settings.pretrain, seed)["test_accuracy"]
        asked = repeats.select_queries(data["queries"], asked_count, seed)
        votes, ids = repeats.read_votes(Path(args.votes), asked)
        _, labels, answered, _ = label_queries(data["queries"], asked, votes, ids, mechanism, noise_source(None),
                                               repeats.DELTA, repeats.CONVERSION, ReleaseSettings(), None, seed,
                                               repeats.PROTOCOL, settings.description)
        given, truth = labels[answered], data["queries"].truth[asked][answered]
        log_probs = predict_log_probs(model, data["queries"].images[asked][answered])
        wrong = given != truth
        dropped = {t: contradicted(log_probs, given, t) for t in THRESHOLDS}
        trials.append({"seed": seed, "public_only_test_accuracy": public_only, "answered": len(given),
                       "wrong": int(wrong.sum()), "by_threshold": {
                           str(t): {"dropped": int(mask.sum()), "dropped_wrong": int((mask & wrong).sum())}
                           for t, mask in dropped.items()}})
        print(trials[-1], flush=True)
    totals = {str(t): {k: sum(x["by_threshold"][str(t)][k] for x in trials) for k in ("dropped", "dropped_wrong")}
              for t in THRESHOLDS}
    write_json(Path(args.out), {
        "note": "diagnostic: the public truth of the MNIST test queries scores the filter; noise from OS entropy",
        "row": "b", "trials": trials, "wrong_total": sum(x["wrong"] for x in trials),
        "answered_total": sum(x["answered"] for x in trials), "totals": totals})


if __name__ == "__main__":
    main()
