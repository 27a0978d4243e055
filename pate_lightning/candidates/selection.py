"""Pure filter rules that turn a teacher's labeled candidate pool into its synthetic dataset.

Rules, in order: (1) confidence, (2) memorization (nearest-neighbour distance to the shard),
(3) diversity against the samples already kept for the class, (4) per-class quota. Every
candidate ends in exactly one bucket: kept, or one of the rejection reasons below.
Images are flattened to ``D`` values in [0, 1]; distances are L2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

REASONS = ("kept", "low_confidence", "memorized", "diversity", "quota")  # code = position
KEPT, LOW_CONFIDENCE, MEMORIZED, DIVERSITY, QUOTA = range(len(REASONS))

_NN_CANDIDATES = 4  # approximate neighbours re-measured exactly per candidate
_EXPANSION_TOL = 2e-4  # float32 rounding bound of ||a||^2 + ||b||^2 - 2ab, relative to ||a||^2 + ||b||^2
_BLOCK = 256  # candidates compared to the kept set per matmul


def _flatten(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValueError(f"{name} must be a tensor of shape (N, ...), got {type(x).__name__}")
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    return x if x.is_floating_point() else x.float()


def nearest_neighbor_distances(candidates: Tensor, shard: Tensor, chunk_size: int = 4096) -> Tensor:
    """L2 distance from each candidate to its nearest shard image.

    The matmul expansion ``||a||^2 + ||b||^2 - 2ab`` ranks the shard in chunks of
    ``chunk_size`` x ``chunk_size``; the best few are then re-measured as ``||a - b||`` so that
    an exact copy of a shard image gets distance 0, not the expansion's rounding noise.

    Args:
        candidates: (N, D) or (N, 1, 28, 28).
        shard: (M, D) or (M, 1, 28, 28), M >= 1.
        chunk_size: rows per chunk on both sides; memory is O(chunk_size ** 2).

    >>> shard = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> nearest_neighbor_distances(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), shard).tolist()
    [0.0, 1.0]
    """
    candidates, shard = _flatten(candidates, "candidates"), _flatten(shard, "shard")
    if shard.shape[0] == 0:
        raise ValueError("shard is empty: nearest-neighbour distances need at least one shard image")
    if candidates.shape[1] != shard.shape[1]:
        raise ValueError(f"candidates have {candidates.shape[1]} values per image, shard has {shard.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    shard = shard.to(candidates.dtype)
    shard_sq = (shard * shard).sum(1)  # (M,)
    k = min(_NN_CANDIDATES, shard.shape[0])
    out = torch.empty(candidates.shape[0], dtype=candidates.dtype, device=candidates.device)
    for start in range(0, candidates.shape[0], chunk_size):
        block = candidates[start : start + chunk_size]  # (C, D)
        block_sq = (block * block).sum(1)
        best_sq = best_idx = None
        for s_start in range(0, shard.shape[0], chunk_size):
            part = shard[s_start : s_start + chunk_size]
            approx = block_sq[:, None] + shard_sq[None, s_start : s_start + part.shape[0]] - 2 * block @ part.T
            idx = torch.arange(s_start, s_start + part.shape[0], device=block.device).expand_as(approx)
            if best_sq is not None:
                approx, idx = torch.cat([best_sq, approx], 1), torch.cat([best_idx, idx], 1)
            best_sq, pos = approx.topk(min(k, approx.shape[1]), dim=1, largest=False)  # (C, k)
            best_idx = idx.gather(1, pos)
        exact = torch.stack([((block - shard[best_idx[:, j]]) ** 2).sum(1) for j in range(k)], 1)
        out[start : start + block.shape[0]] = exact.min(1).values.sqrt()
    return out


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


@dataclass(frozen=True)
class SelectionResult:
    """What ``select_candidates`` decided.

    Args:
        kept_indices: (K,) pool indices, class by class ascending, within a class by descending confidence.
        kept_labels: (K,) labels of the kept candidates.
        kept_confidences: (K,) teacher confidences of the kept candidates.
        reasons: (N,) code per candidate, an index into ``REASONS`` (0 = kept).
        rejected_by: reason -> count, for the four rejection reasons.
        funnel: pool -> confident -> non_memorized -> diverse -> kept; each step removes one reason.
        per_class_kept: (num_classes,) kept counts.
        quotas: (num_classes,) quotas, or None for no quota.
        shortfall: class -> how many short of ``min(min_per_class, quota)``; reported, never padded.
        nn_distance: {"min", "mean"} nearest-shard distance over the kept samples (None if none kept).
        settings: the thresholds used.
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


def _closer_than(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor, threshold: float) -> Tensor:
    """(A, B) bool: ||a_i - b_j|| < threshold; pairs within rounding of the threshold are re-measured exactly."""
    total = a_sq[:, None] + b_sq[None, :]
    approx = total - 2 * a @ b.T  # (A, B)
    limit = threshold**2
    close = approx < limit
    unsure = (approx - limit).abs() <= _EXPANSION_TOL * total + 1e-6
    if unsure.any():
        rows, cols = unsure.nonzero(as_tuple=True)
        close[rows, cols] = ((a[rows].double() - b[cols].double()) ** 2).sum(1) < limit
    return close


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
            blocked = _closer_than(x, x_sq, kept_rows[:n], kept_sq[:n], min_distance).any(1)
        else:
            blocked = torch.zeros(len(block), dtype=torch.bool, device=x.device)
        open_rows = (~blocked).nonzero().flatten()
        # conflicts inside the block, resolved in walking order below
        within = _closer_than(x[open_rows], x_sq[open_rows], x[open_rows], x_sq[open_rows], min_distance).cpu().numpy()
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
    flat = _flatten(images, "images")
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
    if min_nn_distance < 0 or min_diversity_distance < 0 or min_per_class < 0:
        raise ValueError("min_nn_distance, min_diversity_distance and min_per_class must be >= 0")
    # compared in the confidences' own dtype, so a float32 confidence of exactly 0.9 passes 0.9
    thresholds = torch.full((num_classes,), float(confidence_threshold), dtype=confidences.dtype)
    for label, value in (rare_class_thresholds or {}).items():
        if not 0 <= int(label) < num_classes:
            raise ValueError(f"rare_class_thresholds names class {label}, outside 0..{num_classes - 1}")
        if value > confidence_threshold:
            raise ValueError(
                f"rare_class_thresholds[{label}] = {value} is above confidence_threshold = {confidence_threshold};"
                " a rare-class override may only lower the threshold"
            )
        thresholds[int(label)] = float(value)
    if quotas is not None:
        quotas = torch.as_tensor(quotas).long().flatten().cpu()
        if quotas.numel() != num_classes or (quotas < 0).any():
            raise ValueError(f"quotas must be {num_classes} counts >= 0, got {quotas.tolist()}")

    reasons = torch.full((count,), KEPT, dtype=torch.long)
    reasons[confidences < thresholds[labels]] = LOW_CONFIDENCE
    confident = (reasons == KEPT).nonzero().flatten()
    nn = torch.full((count,), float("nan"), dtype=torch.float64)
    if confident.numel():
        nn[confident] = nearest_neighbor_distances(flat[confident.to(flat.device)], shard).double().cpu()
    reasons[nn < min_nn_distance] = MEMORIZED  # NaN (not confident) compares False

    sq = (flat * flat).sum(1)  # (N,)
    ascending = torch.arange(count)
    order = ascending[torch.sort(-confidences, stable=True).indices]  # ties keep the lower index first
    kept_parts = []
    survivors = order[reasons[order] == KEPT]
    for label in range(num_classes):
        members = survivors[labels[survivors] == label]
        limit = len(members) if quotas is None else int(quotas[label])
        kept_class = _walk_class(members, flat, sq, limit, min_diversity_distance, reasons)
        kept_parts.append(torch.tensor(kept_class, dtype=torch.long))
    kept = torch.cat(kept_parts)

    rejected_by = {reason: int((reasons == code).sum()) for code, reason in enumerate(REASONS) if code != KEPT}
    funnel = {"pool": count}
    for step, reason in zip(("confident", "non_memorized", "diverse", "kept"), REASONS[1:]):
        funnel[step] = list(funnel.values())[-1] - rejected_by[reason]
    per_class_kept = torch.bincount(labels[kept], minlength=num_classes)
    caps = [min_per_class] * num_classes if quotas is None else quotas.tolist()
    required = [min(min_per_class, cap) for cap in caps]
    missing = [required[c] - int(per_class_kept[c]) for c in range(num_classes)]
    shortfall = {c: n for c, n in enumerate(missing) if n > 0}
    kept_nn = nn[kept]
    return SelectionResult(
        kept_indices=kept,
        kept_labels=labels[kept],
        kept_confidences=confidences[kept],
        reasons=reasons,
        rejected_by=rejected_by,
        funnel=funnel,
        per_class_kept=per_class_kept,
        quotas=quotas,
        shortfall=shortfall,
        nn_distance={
            "min": float(kept_nn.min()) if kept.numel() else None,
            "mean": float(kept_nn.mean()) if kept.numel() else None,
        },
        settings={
            "confidence_threshold": float(confidence_threshold),
            "rare_class_thresholds": {int(c): float(v) for c, v in (rare_class_thresholds or {}).items()},
            "min_nn_distance": float(min_nn_distance),
            "min_diversity_distance": float(min_diversity_distance),
            "min_per_class": int(min_per_class),
        },
    )


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
