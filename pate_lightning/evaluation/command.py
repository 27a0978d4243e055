"""``pate-lightning evaluate``: the success criteria of each teacher's synthetic dataset, one report each.

Writes ``teachers/teacher_{id}/evaluation_report.json`` and prints one summary table.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import torch

from pate_lightning import layout
from pate_lightning.evaluation import criteria as evaluation
from pate_lightning.data import shards as shard_lib
from pate_lightning.data.sources import load_split
from pate_lightning.errors import PateError
from pate_lightning.io import sha256_file, write_json
from pate_lightning.candidates.synthetic import finished_teachers, load_synthetic

log = logging.getLogger(__name__)


def _statistic(function, *args, needs: int = 1) -> float:
    """``function(*args)``, or NaN (reported as None and failed) when the set is too small for it."""
    if len(args[0]) < needs:
        return math.nan
    try:
        return function(*args)
    except ValueError:  # e.g. a shard of identical images
        return math.nan


def evaluate_teacher(
    teacher_id: int, run_dir: Path, shard: torch.Tensor, shard_labels: torch.Tensor,
    thresholds: evaluation.CriteriaThresholds, reference: Optional[torch.nn.Module], reference_report: Optional[dict],
) -> dict:
    """The evaluation report of one teacher (see README, "Evaluating the synthetic datasets")."""
    data = load_synthetic(run_dir, teacher_id)
    agreement = None
    if reference is not None:
        from pate_lightning.evaluation.reference import predict_labels

        agreement = _statistic(evaluation.agreement_rate, data.labels, predict_labels(reference, data.images))
    count = len(data.labels)
    criteria = evaluation.evaluate_criteria(
        mean_confidence=float(data.confidences.mean()) if count else math.nan,
        diversity_ratio=_statistic(evaluation.diversity_ratio, data.images, shard, needs=2),
        min_nn_distance=_statistic(evaluation.min_nn_distance, data.images, shard),
        class_histogram_l1=_statistic(evaluation.class_histogram_l1, data.labels, shard_labels),
        agreement_rate=agreement,
        thresholds=thresholds,
    )
    files = {
        "synthetic_samples": layout.synthetic_samples_file(run_dir, teacher_id),
        "labels": layout.labels_file(run_dir, teacher_id),
        "selection_report": layout.selection_report_file(run_dir, teacher_id),
    }
    return {
        "teacher_id": teacher_id,
        "num_samples": count,
        "shard_size": len(shard_labels),
        "criteria": {name: value for name, value in criteria.items() if name != "all_passed"},
        "all_passed": criteria["all_passed"],
        "reference": None if reference_report is None else {
            "path": str(layout.reference_model_file(run_dir).relative_to(run_dir)), "sha256": reference_report["sha256"],
            "heldout_accuracy": reference_report["heldout_accuracy"],
        },
        "inputs": {name: {"path": str(path.relative_to(run_dir)), "sha256": sha256_file(path)} for name, path in files.items()},
    }


def evaluate_command(
    run_dir: str = ".",
    data_dir: str = "data",
    dataset: str = "mnist",
    teacher_ids: Optional[list[int]] = None,
    min_mean_confidence: float = 0.9,
    min_diversity_ratio: float = 0.75,
    min_nn_distance: float = 1.0,
    max_class_histogram_l1: float = 0.2,
    min_agreement_rate: Optional[float] = None,
    reference: bool = True,
    reference_epochs: int = 3,
    reference_seed: int = 42,
) -> dict[int, dict]:
    """Judge each teacher's synthetic dataset against the success criteria.

    Args:
        run_dir: the run directory.
        data_dir: where the dataset files live (the shards, and the test split for the reference).
        dataset: mnist, fashion_mnist, kmnist or emnist.
        teacher_ids: teachers to evaluate (default: every teacher with a selection_report.json).
        min_mean_confidence: pass if the mean teacher confidence is >= this.
        min_diversity_ratio: pass if mean pairwise distance (synthetic / shard) is >= this.
        min_nn_distance: pass if every synthetic image is at least this far (L2) from the shard.
        max_class_histogram_l1: pass if the class-histogram L1 distance to the shard is < this.
        min_agreement_rate: pass threshold for agreement with the reference (None: reported only).
        reference: compute the agreement rate with a reference classifier trained on the first
            half of the test split (no teacher's data), cached in {run_dir}/reference/.
        reference_epochs: epochs of the reference classifier (when trained).
        reference_seed: seed of the reference classifier.
    """
    root = Path(run_dir)
    done = finished_teachers(root)
    wanted = done if teacher_ids is None else [int(t) for t in teacher_ids]
    missing = [t for t in wanted if t not in done]
    if missing:
        raise PateError(f"teachers {missing} have no selection_report.json; run the generate stage for them first.",
                        layout.teachers_root(root))
    if not wanted:
        raise PateError("no teacher has a synthetic dataset yet; run `pate-lightning predict --config configs/generate.yaml`.", root)
    thresholds = evaluation.CriteriaThresholds(
        min_mean_confidence, min_diversity_ratio, min_nn_distance, max_class_histogram_l1, min_agreement_rate
    )
    images, labels = load_split(dataset, data_dir, train=True)
    path = layout.shard_file(root)
    shards = shard_lib.load_or_create(path, len(images), 0, 0, create=False)
    ref_model = ref_report = None
    if reference:
        from pate_lightning.evaluation.reference import load_or_train_reference

        ref_model, ref_report = load_or_train_reference(root, data_dir, dataset, reference_epochs, reference_seed)
    reports = {}
    for teacher_id in wanted:
        if teacher_id not in shards:
            raise PateError(f"teacher {teacher_id} is not in the shard file.", path)
        index = shards[teacher_id]
        shard = images[index].unsqueeze(1).float().div(255)  # (M, 1, 28, 28) in [0, 1]
        report = evaluate_teacher(teacher_id, root, shard, labels[index], thresholds, ref_model, ref_report)
        write_json(layout.evaluation_report_file(root, teacher_id), report)
        reports[teacher_id] = report
    print(evaluation.summary_table({t: {**r["criteria"], "all_passed": r["all_passed"]} for t, r in reports.items()}))
    return reports
