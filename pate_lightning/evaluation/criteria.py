"""Success criteria for a teacher's synthetic dataset, and a summary table over teachers.

The criteria and their defaults: average teacher confidence >= 0.9, diversity ratio (mean
pairwise distance of the synthetic set over that of the shard) >= 0.75, distance from every
synthetic image to its nearest shard image >= 1.0, and L1 distance between the synthetic and
the shard class histograms < 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

from pate_lightning.candidates.distances import nearest_neighbor_distances

# criterion -> how a value passes its threshold; the order is the order of reports and tables
CRITERIA = {
    "mean_confidence": ">=",
    "diversity_ratio": ">=",
    "min_nn_distance": ">=",
    "class_histogram_l1": "<",
    "agreement_rate": ">=",
}


def _flatten(x: Tensor, name: str) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() < 1:
        raise ValueError(f"{name} must have shape (N, ...), got a scalar")
    return x.reshape(x.shape[0], -1).double()


def mean_pairwise_distance(x: Tensor, max_samples: int = 2000, generator: Optional[torch.Generator] = None) -> float:
    """Mean L2 distance over distinct pairs of rows of ``x`` (N, D) or (N, 1, 28, 28).

    When N > ``max_samples``, a subset of ``max_samples`` rows is drawn with ``generator``
    (a fresh ``Generator`` seeded 0 when None), so the value is deterministic.

    >>> mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]]))
    4.0
    """
    x = _flatten(x, "x")
    if x.shape[0] < 2:
        raise ValueError(f"mean pairwise distance needs at least 2 samples, got {x.shape[0]}")
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    if x.shape[0] > max_samples:
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        x = x[torch.randperm(x.shape[0], generator=generator)[:max_samples]]
    sq = (x * x).sum(1)  # (N,)
    distances = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0).sqrt()  # (N, N), float64
    pairs = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    return float(distances[pairs[0], pairs[1]].mean())


def diversity_ratio(
    synthetic: Tensor, shard: Tensor, max_samples: int = 2000, generator: Optional[torch.Generator] = None
) -> float:
    """Mean pairwise distance of ``synthetic`` divided by that of ``shard``; 1.0 = as spread out as the shard.

    >>> shard = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    >>> diversity_ratio(torch.tensor([[0.0, 0.0], [0.0, 1.0]]), shard)
    0.5
    """
    reference = mean_pairwise_distance(shard, max_samples, generator)
    if reference == 0:
        raise ValueError("the shard's images are all identical: the diversity ratio is undefined")
    return mean_pairwise_distance(synthetic, max_samples, generator) / reference


def min_nn_distance(synthetic: Tensor, shard: Tensor) -> float:
    """Smallest L2 distance from any synthetic image to its nearest shard image (memorization check)."""
    if len(synthetic) == 0:
        raise ValueError("no synthetic samples: the nearest-neighbour distance is undefined")
    return float(nearest_neighbor_distances(torch.as_tensor(synthetic), torch.as_tensor(shard)).min())


def _histogram(labels_or_counts: Union[Tensor, Mapping], num_classes: int, name: str) -> Tensor:
    if isinstance(labels_or_counts, Mapping):  # counts, e.g. metadata.json's class_distribution
        counts = torch.zeros(num_classes, dtype=torch.float64)
        for key, count in labels_or_counts.items():
            if not 0 <= int(key) < num_classes:
                raise ValueError(f"class {key!r} in {name} is outside 0..{num_classes - 1}")
            counts[int(key)] = float(count)
    else:
        labels = torch.as_tensor(labels_or_counts).long().flatten()
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
        counts = torch.bincount(labels, minlength=num_classes).double()
    if (counts < 0).any() or counts.sum() == 0:
        raise ValueError(f"{name} is empty: a class histogram needs at least one sample")
    return counts / counts.sum()


def class_histogram_l1(
    synthetic_labels: Tensor, shard_labels: Union[Tensor, Mapping[Union[int, str], int]], num_classes: int = 10
) -> float:
    """L1 distance in [0, 2] between the normalized class histograms of the synthetic set and the shard.

    ``shard_labels`` is either the shard's labels (a tensor or list) or its counts as a mapping
    class -> count (int or str keys, like ``metadata.json``'s ``class_distribution``).

    >>> class_histogram_l1(torch.tensor([0, 0, 1, 1]), {"0": 3, "1": 1})
    0.5
    """
    synthetic = _histogram(synthetic_labels, num_classes, "synthetic_labels")
    return float((synthetic - _histogram(shard_labels, num_classes, "shard_labels")).abs().sum())


def agreement_rate(labels_a: Tensor, labels_b: Tensor) -> float:
    """Fraction of positions where the two label vectors agree.

    >>> agreement_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4]))
    0.75
    """
    labels_a, labels_b = torch.as_tensor(labels_a).flatten(), torch.as_tensor(labels_b).flatten()
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"label vectors differ in length: {labels_a.numel()} and {labels_b.numel()}")
    if labels_a.numel() == 0:
        raise ValueError("no labels to compare")
    return float((labels_a == labels_b).double().mean())


@dataclass(frozen=True)
class CriteriaThresholds:
    """Pass thresholds of the success criteria.

    Args:
        mean_confidence: average teacher confidence of the kept samples must be >= this.
        diversity_ratio: synthetic / shard mean pairwise distance must be >= this.
        min_nn_distance: every synthetic image must be at least this far (L2) from the shard.
        class_histogram_l1: synthetic vs. shard class-histogram L1 must be < this.
        agreement_rate: if set, the agreement rate must be >= this; None reports it without pass/fail.
    """

    mean_confidence: float = 0.9
    diversity_ratio: float = 0.75
    min_nn_distance: float = 1.0
    class_histogram_l1: float = 0.2
    agreement_rate: Optional[float] = None


def _judge(name: str, value: Optional[float], threshold: Optional[float]) -> dict:
    value = None if value is None or not math.isfinite(value) else float(value)  # NaN is not JSON
    if threshold is None:
        return {"value": value, "threshold": None, "passed": None}
    if value is None:
        passed = False
    else:
        passed = value >= threshold if CRITERIA[name] == ">=" else value < threshold
    return {"value": value, "threshold": float(threshold), "passed": passed}


def evaluate_criteria(
    *,
    mean_confidence: float,
    diversity_ratio: float,
    min_nn_distance: float,
    class_histogram_l1: float,
    agreement_rate: Optional[float] = None,
    thresholds: CriteriaThresholds = CriteriaThresholds(),
) -> dict:
    """Judge each criterion: ``{name: {"value", "threshold", "passed"}, ..., "all_passed": bool}``.

    A NaN value (e.g. no samples kept) is reported as None and fails. ``agreement_rate`` appears
    only when given, and is judged only when ``thresholds.agreement_rate`` is set.

    >>> report = evaluate_criteria(mean_confidence=0.95, diversity_ratio=0.8, min_nn_distance=2.5,
    ...                            class_histogram_l1=0.25)
    >>> report["class_histogram_l1"], report["all_passed"]
    ({'value': 0.25, 'threshold': 0.2, 'passed': False}, False)
    """
    values = {
        "mean_confidence": mean_confidence,
        "diversity_ratio": diversity_ratio,
        "min_nn_distance": min_nn_distance,
        "class_histogram_l1": class_histogram_l1,
    }
    if agreement_rate is not None:
        values["agreement_rate"] = agreement_rate
    elif thresholds.agreement_rate is not None:
        raise ValueError("thresholds.agreement_rate is set but no agreement_rate was given")
    report = {name: _judge(name, value, getattr(thresholds, name)) for name, value in values.items()}
    report["all_passed"] = all(entry["passed"] is not False for entry in report.values())
    return report


def summary_table(reports: Mapping[int, Mapping]) -> str:
    """Plain-text table: one row per teacher (value and PASS/FAIL per criterion), then the pass counts.

    ``reports`` maps teacher id -> the dict ``evaluate_criteria`` returned. A criterion without
    a threshold shows its value and "-"; a missing one shows "n/a".
    """
    if not reports:
        raise ValueError("no evaluation reports to summarize")
    names = [name for name in CRITERIA if any(name in report for report in reports.values())]
    width = max(len(name) for name in names) + 1

    def cell(entry: Optional[Mapping]) -> str:
        if entry is None:
            return "n/a"
        value = "n/a" if entry["value"] is None else f"{entry['value']:.3f}"
        verdict = {True: "PASS", False: "FAIL", None: "-"}[entry["passed"]]
        return f"{value} {verdict}"

    lines = [" ".join([f"{'teacher':>8}", *(f"{name:>{width}}" for name in names), f"{'all':>5}"])]
    for teacher_id in sorted(reports):
        report = reports[teacher_id]
        cells = [f"{cell(report.get(name)):>{width}}" for name in names]
        lines.append(" ".join([f"{teacher_id:>8}", *cells, f"{'PASS' if report['all_passed'] else 'FAIL':>5}"]))
    total = len(reports)
    counts = []
    for name in names:
        judged = [r[name]["passed"] for r in reports.values() if name in r and r[name]["passed"] is not None]
        counts.append(f"{name} {sum(judged)}/{total}" if judged else f"{name} -")
    counts.append(f"all {sum(bool(r['all_passed']) for r in reports.values())}/{total}")
    lines.append("teachers passing: " + ", ".join(counts))
    return "\n".join(lines)
