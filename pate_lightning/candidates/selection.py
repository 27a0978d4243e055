"""Pure filter rules that turn a teacher's labeled candidate pool into its synthetic dataset.

Rules, in order: (1) confidence, (2) memorization (nearest-neighbour distance to the shard),
(3) diversity against the samples already kept for the class, (4) per-class quota. Every
candidate ends in exactly one bucket: kept, or one of the rejection reasons below.
Images are flattened to ``D`` values in [0, 1]; distances are L2 (``distances``).

``select_candidates`` applies all four to a whole pool. A pool too large to hold goes through
``screen`` (rules 1-2) batch by batch, and ``select_survivors`` (rules 3-4) runs once over what
survived, with the counts ``screen`` rejected: the result is the same as selecting the whole pool.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

from pate_lightning.candidates.distances import closer_than, flatten, nearest_neighbor_distances
from pate_lightning.candidates.selection_result import (
    DIVERSITY, KEPT, LOW_CONFIDENCE, MEMORIZED, QUOTA, REASONS, SelectionResult, funnel, to_report,
)
from pate_lightning.candidates.thresholds import Thresholds, class_quotas

__all__ = [  # the selection API: the rules here, their settings, result and report from beside
    "KEPT", "LOW_CONFIDENCE", "MEMORIZED", "DIVERSITY", "QUOTA", "REASONS", "SelectionResult", "Thresholds", "class_quotas",
    "funnel", "nearest_neighbor_distances", "screen",
    "select_candidates", "select_survivors", "to_report",
]

_BLOCK = 256  # candidates compared to the kept set per matmul


def _walk_class(members, flat, sq, limit, min_distance, reasons) -> list:
    """Rules (3) and (4) for one class: ``members`` in walking order; returns the kept pool indices."""
    kept: list = []
    kept_rows = flat.new_empty((min(limit, len(members)), flat.shape[1]))
    kept_sq = sq.new_empty(kept_rows.shape[0])
    pos = 0
    while pos < len(members) and len(kept) < limit:
        block = members[pos : pos + _BLOCK]
        if min_distance <= 0:  # diversity disabled: keep in order until the quota is full
            take = min(limit - len(kept), len(block))
            kept.extend(block[:take].tolist())
            pos += take
            continue
        x, x_sq = flat[block], sq[block]  # (B, D), (B,)
        n = len(kept)
        if n:  # one matmul against everything kept so far
            blocked = closer_than(x, x_sq, kept_rows[:n], kept_sq[:n], min_distance).any(1)
        else:
            blocked = torch.zeros(len(block), dtype=torch.bool, device=x.device)
        open_rows = (~blocked).nonzero().flatten()
        # conflicts inside the block, resolved in walking order below
        within = closer_than(x[open_rows], x_sq[open_rows], x[open_rows], x_sq[open_rows], min_distance).cpu().numpy()
        open_pos = {int(r): j for j, r in enumerate(open_rows)}
        kept_here: list = []  # positions in open_rows kept in this block
        for row in range(len(block)):
            if len(kept) == limit:
                break
            pos += 1
            j = open_pos.get(row)
            if j is None or within[j, kept_here].any():
                reasons[block[row]] = DIVERSITY
                continue
            kept_rows[len(kept)], kept_sq[len(kept)] = x[row], x_sq[row]
            kept.append(int(block[row]))
            kept_here.append(j)
    reasons[members[pos:]] = QUOTA  # not reached: the quota is full
    return kept



def _check_pool(images: Tensor, labels: Tensor, confidences: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(N, D) images on their device; (N,) long labels and floating confidences on the CPU; clear errors otherwise."""
    flat = flatten(images, "images")
    count = flat.shape[0]
    labels = torch.as_tensor(labels).long().flatten().cpu()
    confidences = torch.as_tensor(confidences).flatten().cpu()
    if not confidences.is_floating_point():
        raise ValueError(f"confidences must be floating point, got {confidences.dtype}")
    if labels.numel() != count or confidences.numel() != count:
        raise ValueError(f"{count} images but {labels.numel()} labels and {confidences.numel()} confidences")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    if torch.isnan(confidences).any():
        raise ValueError("confidences contain NaN")
    return flat, labels, confidences


def _screen(flat: Tensor, labels: Tensor, confidences: Tensor, shard: Tensor, thresholds: Thresholds) -> tuple[Tensor, Tensor]:
    reasons = torch.full((flat.shape[0],), KEPT, dtype=torch.long)
    # compared in the confidences' own dtype, so a float32 confidence of exactly 0.9 passes 0.9
    reasons[confidences < thresholds.per_class(confidences.dtype)[labels]] = LOW_CONFIDENCE
    confident = (reasons == KEPT).nonzero().flatten()
    nn = torch.full((flat.shape[0],), float("nan"), dtype=torch.float64)
    if confident.numel():
        nn[confident] = nearest_neighbor_distances(flat[confident.to(flat.device)], shard).double().cpu()
    reasons[nn < thresholds.min_nn_distance] = MEMORIZED  # NaN (not confident) compares False
    return reasons, nn


def screen(images: Tensor, labels: Tensor, confidences: Tensor, shard: Tensor, thresholds: Thresholds) -> tuple[Tensor, Tensor]:
    """Rules (1) and (2) on a batch: (N,) codes (``KEPT``, ``LOW_CONFIDENCE`` or ``MEMORIZED``) on the CPU and
    (N,) float64 nearest-shard distances (NaN where rule (1) already rejected)."""
    flat, labels, confidences = _check_pool(images, labels, confidences, thresholds.num_classes)
    return _screen(flat, labels, confidences, shard, thresholds)


def _fill(
    flat: Tensor, labels: Tensor, confidences: Tensor, reasons: Tensor, nn: Tensor, quotas: Optional[Tensor],
    thresholds: Thresholds, screened_out: Mapping[str, int],
) -> SelectionResult:
    """Rules (3)-(4) over the candidates still ``KEPT`` in ``reasons``, and the summary of the whole pool."""
    num_classes, count = thresholds.num_classes, flat.shape[0]
    if quotas is not None:
        quotas = torch.as_tensor(quotas).long().flatten().cpu()
        if quotas.numel() != num_classes or (quotas < 0).any():
            raise ValueError(f"quotas must be {num_classes} counts >= 0, got {quotas.tolist()}")
    sq = (flat * flat).sum(1)  # (N,)
    ascending = torch.arange(count)
    order = ascending[torch.sort(-confidences, stable=True).indices]  # ties keep the lower index first
    kept_parts = []
    survivors = order[reasons[order] == KEPT]
    for label in range(num_classes):
        members = survivors[labels[survivors] == label]
        limit = len(members) if quotas is None else int(quotas[label])
        kept_class = _walk_class(members, flat, sq, limit, thresholds.min_diversity_distance, reasons)
        kept_parts.append(torch.tensor(kept_class, dtype=torch.long))
    kept = torch.cat(kept_parts)

    rejected_by = {
        reason: int((reasons == code).sum()) + int(screened_out.get(reason, 0))
        for code, reason in enumerate(REASONS) if code != KEPT
    }
    per_class_kept = torch.bincount(labels[kept], minlength=num_classes)
    min_per_class = thresholds.min_per_class
    caps = [min_per_class] * num_classes if quotas is None else quotas.tolist()
    required = [min(min_per_class, cap) for cap in caps]
    missing = [required[c] - int(per_class_kept[c]) for c in range(num_classes)]
    kept_nn = nn[kept]
    return SelectionResult(
        kept_indices=kept,
        kept_labels=labels[kept],
        kept_confidences=confidences[kept],
        reasons=reasons,
        rejected_by=rejected_by,
        funnel=funnel(count + sum(int(n) for n in screened_out.values()), rejected_by),
        per_class_kept=per_class_kept,
        quotas=quotas,
        shortfall={c: n for c, n in enumerate(missing) if n > 0},
        nn_distance={
            "min": float(kept_nn.min()) if kept.numel() else None,
            "mean": float(kept_nn.mean()) if kept.numel() else None,
        },
        settings=thresholds.as_dict(),
    )


def select_survivors(
    images: Tensor, labels: Tensor, confidences: Tensor, nn_distances: Tensor, *, thresholds: Thresholds,
    quotas: Optional[Tensor] = None, screened_out: Optional[Mapping[str, int]] = None,
) -> SelectionResult:
    """Rules (3)-(4) over candidates that passed ``screen``, gathered batch by batch.

    Args:
        nn_distances: (N,) their nearest-shard distances from ``screen``.
        screened_out: how many candidates ``screen`` rejected per reason (no longer held), so the
            result's counts and funnel cover the whole pool.
    """
    flat, labels, confidences = _check_pool(images, labels, confidences, thresholds.num_classes)
    reasons = torch.full((flat.shape[0],), KEPT, dtype=torch.long)
    nn = torch.as_tensor(nn_distances).double().flatten().cpu()
    return _fill(flat, labels, confidences, reasons, nn, quotas, thresholds, screened_out or {})


def select_candidates(
    images: Tensor,
    labels: Tensor,
    confidences: Tensor,
    shard: Tensor,
    *,
    confidence_threshold: float = 0.9,
    rare_class_thresholds: Optional[Mapping[int, float]] = None,
    min_nn_distance: float = 2.0,
    quotas: Optional[Tensor] = None,
    min_per_class: int = 150,
    min_diversity_distance: float = 3.0,
    num_classes: int = 10,
) -> SelectionResult:
    """Apply the four rules to a labeled candidate pool (see the module docstring).

    (1) ``confidence < threshold`` is "low_confidence"; ``rare_class_thresholds`` may lower the
    threshold per class, never raise it. (2) A nearest shard image closer than
    ``min_nn_distance`` is "memorized". (3)+(4) Per class, survivors are walked by descending
    confidence (ties: lower index first); one closer than ``min_diversity_distance`` to a sample
    already kept for its class is "diversity" (0 disables the check), the others are kept until
    the class quota is full, and those not reached are "quota".

    Args:
        images: (N, 1, 28, 28) or (N, 784) in [0, 1].
        labels: (N,) teacher labels in ``0..num_classes - 1``.
        confidences: (N,) teacher confidence of each label.
        shard: (M, ...) the teacher's private images, same layout as ``images``.
        quotas: (num_classes,) per-class maximum (e.g. from ``class_quotas``); None = no quota.
        min_per_class: a class kept below ``min(min_per_class, quota)`` is reported in ``shortfall``.
    """
    thresholds = Thresholds(
        confidence_threshold, rare_class_thresholds or {}, min_nn_distance, min_diversity_distance, min_per_class,
        num_classes,
    )
    flat, labels, confidences = _check_pool(images, labels, confidences, num_classes)
    reasons, nn = _screen(flat, labels, confidences, shard, thresholds)
    return _fill(flat, labels, confidences, reasons, nn, quotas, thresholds, {})
