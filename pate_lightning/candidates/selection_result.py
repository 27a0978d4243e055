"""What a selection decided (``SelectionResult``), its funnel and its JSON report: every candidate counted once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from torch import Tensor

REASONS = ("kept", "low_confidence", "memorized", "diversity", "quota")  # code = position
KEPT, LOW_CONFIDENCE, MEMORIZED, DIVERSITY, QUOTA = range(len(REASONS))
FUNNEL = ("pool", "confident", "non_memorized", "diverse", "kept")  # step i + 1 removes REASONS[i + 1]


@dataclass(frozen=True)
class SelectionResult:
    """What ``select_candidates`` (or ``select_survivors``) decided.

    Args:
        kept_indices: (K,) indices into the candidates passed in, class by class ascending, within a class
            by descending confidence.
        kept_labels: (K,) labels of the kept candidates.
        kept_confidences: (K,) teacher confidences of the kept candidates.
        reasons: (N,) code per candidate passed in, an index into ``REASONS`` (0 = kept).
        rejected_by: reason -> count over the whole pool, for the four rejection reasons.
        funnel: pool -> confident -> non_memorized -> diverse -> kept; each step removes one reason.
        per_class_kept: (num_classes,) kept counts.
        quotas: (num_classes,) quotas, or None for no quota.
        shortfall: class -> how many short of ``min(min_per_class, quota)``; reported, never padded.
        nn_distance: {"min", "mean"} nearest-shard distance over the kept samples (None if none kept).
        settings: the thresholds used (``Thresholds.as_dict``).
    """

    kept_indices: Tensor
    kept_labels: Tensor
    kept_confidences: Tensor
    reasons: Tensor
    rejected_by: dict
    funnel: dict
    per_class_kept: Tensor
    quotas: Optional[Tensor]
    shortfall: dict
    nn_distance: dict
    settings: dict


def funnel(pool_size: int, rejected_by: Mapping[str, int]) -> dict[str, int]:
    """Candidates left after each rule.

    >>> funnel(10, {"low_confidence": 4, "memorized": 1, "diversity": 2, "quota": 0})
    {'pool': 10, 'confident': 6, 'non_memorized': 5, 'diverse': 3, 'kept': 3}
    """
    steps = {FUNNEL[0]: pool_size}
    for step, reason in zip(FUNNEL[1:], REASONS[1:]):
        steps[step] = list(steps.values())[-1] - rejected_by[reason]
    return steps


def to_report(result: SelectionResult) -> dict:
    """JSON-ready counts of a ``SelectionResult`` (ints, floats, string keys) for ``selection_report.json``."""
    kept = result.per_class_kept.tolist()
    quotas = None if result.quotas is None else result.quotas.tolist()
    return {
        "pool_size": result.funnel["pool"],
        "kept": result.funnel["kept"],
        "rejected_by": dict(result.rejected_by),
        "funnel": dict(result.funnel),
        "per_class": {
            str(c): {
                "kept": kept[c],
                "quota": None if quotas is None else quotas[c],
                "shortfall": result.shortfall.get(c, 0),
            }
            for c in range(len(kept))
        },
        "shortfall": {str(c): n for c, n in result.shortfall.items()},
        "mean_confidence": float(result.kept_confidences.double().mean()) if len(result.kept_indices) else None,
        "nn_distance": dict(result.nn_distance),
        "settings": {
            **result.settings,
            "rare_class_thresholds": {str(c): v for c, v in result.settings["rare_class_thresholds"].items()},
        },
    }
