"""The selection rules' settings: thresholds checked once (``Thresholds``) and per-class quotas (``class_quotas``).

Pure; read by ``selection`` (the rules) and by the generate stage's labeling, so a setting is
checked and a quota computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

import torch
from torch import Tensor


@dataclass(frozen=True)
class Thresholds:
    """Settings of the four rules (see ``selection``), checked on creation.

    Args:
        confidence_threshold: rule (1): a candidate needs teacher confidence >= this, in [0, 1].
        rare_class_thresholds: class -> a lower threshold for that class (never higher).
        min_nn_distance: rule (2): L2 distance to the nearest shard image must be >= this.
        min_diversity_distance: rule (3): distance to every kept sample of the class must be >= this; 0 disables.
        min_per_class: a class kept below ``min(min_per_class, quota)`` is reported as a shortfall.
        num_classes: labels lie in ``0..num_classes - 1``.

    >>> Thresholds(0.9, {"1": 0.7}).per_class(torch.float32).tolist()[:3]
    [0.8999999761581421, 0.699999988079071, 0.8999999761581421]
    """

    confidence_threshold: float = 0.9
    rare_class_thresholds: Mapping[int, float] = field(default_factory=dict)
    min_nn_distance: float = 2.0
    min_diversity_distance: float = 3.0
    min_per_class: int = 150
    num_classes: int = 10

    def __post_init__(self) -> None:
        rare = {int(c): float(v) for c, v in (self.rare_class_thresholds or {}).items()}
        object.__setattr__(self, "rare_class_thresholds", rare)
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must lie in [0, 1], got {self.confidence_threshold}")
        for label, value in rare.items():
            if not 0 <= label < self.num_classes:
                raise ValueError(f"rare_class_thresholds names class {label}, outside 0..{self.num_classes - 1}")
            if not 0.0 <= value <= self.confidence_threshold:
                raise ValueError(
                    f"rare_class_thresholds[{label}] = {value} must lie in [0, confidence_threshold = "
                    f"{self.confidence_threshold}]: a rare-class override may only lower the threshold"
                )
        if self.min_nn_distance < 0 or self.min_diversity_distance < 0 or self.min_per_class < 0:
            raise ValueError(
                "min_nn_distance, min_diversity_distance and min_per_class must be >= 0, got "
                f"{self.min_nn_distance}, {self.min_diversity_distance}, {self.min_per_class}"
            )

    def per_class(self, dtype: torch.dtype) -> Tensor:
        """(num_classes,) rule (1)'s threshold of each class, in ``dtype`` (the confidences' own)."""
        thresholds = torch.full((self.num_classes,), float(self.confidence_threshold), dtype=dtype)
        for label, value in self.rare_class_thresholds.items():
            thresholds[label] = value
        return thresholds

    def as_dict(self) -> dict:
        """The settings as recorded with a selection (int keys; ``selection.to_report`` makes them strings)."""
        return {
            "confidence_threshold": float(self.confidence_threshold),
            "rare_class_thresholds": dict(self.rare_class_thresholds),
            "min_nn_distance": float(self.min_nn_distance),
            "min_diversity_distance": float(self.min_diversity_distance),
            "min_per_class": int(self.min_per_class),
        }


def class_quotas(
    class_distribution: Union[Mapping[Union[int, str], int], Tensor],
    min_per_class: int = 150,
    max_per_class: int = 500,
    num_classes: int = 10,
) -> Tensor:
    """Per-class targets proportional to the shard's class distribution.

    The most frequent class gets ``max_per_class``; class ``c`` gets
    ``round(max_per_class * count_c / max_count)`` (halves round up), clamped to
    ``[min_per_class, max_per_class]``. Design decision: a class absent from the shard still
    gets ``min_per_class``, because the student needs every class and the teacher's VAE may
    still decode it; whether it actually does shows up as a shortfall, never as padding.

    Args:
        class_distribution: class -> count (int or str keys, as in ``metadata.json``), or a
            tensor of ``num_classes`` counts.

    >>> class_quotas({0: 30, 1: 24, 2: 3}, min_per_class=150, max_per_class=500).tolist()
    [500, 400, 150, 150, 150, 150, 150, 150, 150, 150]
    """
    if not 0 <= min_per_class <= max_per_class:
        raise ValueError(f"need 0 <= min_per_class <= max_per_class, got {min_per_class} and {max_per_class}")
    if isinstance(class_distribution, Mapping):
        counts = torch.zeros(num_classes, dtype=torch.long)
        for key, count in class_distribution.items():
            label = int(key)
            if not 0 <= label < num_classes:
                raise ValueError(f"class {key!r} in class_distribution is outside 0..{num_classes - 1}")
            counts[label] = int(count)
    else:
        counts = torch.as_tensor(class_distribution).long().flatten()
        if counts.numel() != num_classes:
            raise ValueError(f"class_distribution must hold {num_classes} counts, got {counts.numel()}")
    if (counts < 0).any() or counts.sum() == 0:
        raise ValueError(f"class counts must be >= 0 and not all zero, got {counts.tolist()}")
    top = counts.max()
    quotas = (2 * counts * max_per_class + top) // (2 * top)  # integer round-half-up of count/top * max
    return quotas.clamp(min_per_class, max_per_class)
