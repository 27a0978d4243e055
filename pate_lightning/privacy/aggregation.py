"""PATE's noisy vote aggregators on a (queries, classes) vote-count tensor, with an explicit generator.

LNMax: Papernot et al. 2017 (arXiv:1610.05755), Eq. 1. GNMax and Confident-GNMax: Papernot et al. 2018
(arXiv:1802.08908), Section 4 and Algorithm 1. Their privacy cost is in ``analysis`` and ``accountant``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

UNANSWERED = -1  # label of a query Confident-GNMax declines to answer


class ConfidentGNMaxResult(NamedTuple):
    labels: torch.Tensor  # (Q,) long, UNANSWERED where not answered
    answered: torch.Tensor  # (Q,) bool


def _check_scale(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_votes(votes: torch.Tensor, num_teachers: Optional[int]) -> torch.Tensor:
    if not isinstance(votes, torch.Tensor) or votes.ndim != 2 or votes.shape[1] < 2:
        shape = tuple(votes.shape) if isinstance(votes, torch.Tensor) else type(votes).__name__
        raise ValueError(f"votes must be a (queries, classes) tensor with at least 2 classes, got {shape}")
    if votes.is_complex() or votes.dtype == torch.bool:
        raise ValueError(f"votes must hold real counts, got dtype {votes.dtype}")
    if votes.is_floating_point() and not torch.isfinite(votes).all():
        raise ValueError("votes must be finite")
    if (votes < 0).any():
        rows = torch.nonzero((votes < 0).any(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"votes must be non-negative counts; negative counts in queries {rows}")
    if num_teachers is not None:
        wrong = torch.nonzero(votes.sum(dim=1) != num_teachers).flatten()
        if wrong.numel():
            raise ValueError(
                f"each query's votes must sum to num_teachers={num_teachers}; "
                f"{wrong.numel()} queries do not (first: {wrong[:5].tolist()})"
            )
    return votes.to(torch.float64)  # exact counts up to 2**53; noise is added in float64 too


def vote_counts(predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Histogram of the teachers' predicted labels for each query.

    Args:
        predictions: (teachers, queries) integer labels in ``[0, num_classes)``.
        num_classes: number of classes.

    >>> vote_counts(torch.tensor([[0, 2], [0, 1], [1, 2]]), num_classes=3)
    tensor([[2, 1, 0],
            [0, 1, 2]])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(predictions, torch.Tensor) or predictions.ndim != 2:
        shape = tuple(predictions.shape) if isinstance(predictions, torch.Tensor) else type(predictions).__name__
        raise ValueError(f"predictions must be a (teachers, queries) tensor, got {shape}")
    if predictions.is_floating_point() or predictions.is_complex() or predictions.dtype == torch.bool:
        raise ValueError(f"predictions must be integer labels, got dtype {predictions.dtype}")
    if predictions.numel() and (predictions.min() < 0 or predictions.max() >= num_classes):
        low, high = predictions.min().item(), predictions.max().item()
        raise ValueError(f"predictions must lie in [0, {num_classes}), got range [{low}, {high}]")
    labels = predictions.long().t()  # (Q, T)
    counts = torch.zeros(labels.shape[0], num_classes, dtype=torch.long, device=labels.device)  # (Q, C)
    return counts.scatter_add_(1, labels, torch.ones_like(labels))


def lnmax(
    votes: torch.Tensor, gamma: float, generator: torch.Generator, num_teachers: Optional[int] = None
) -> torch.Tensor:
    """argmax of the votes plus Laplace(0, 1/gamma) noise on every count (PATE 2017, Eq. 1).

    >>> votes = torch.tensor([[240, 5, 5], [3, 200, 47]])
    >>> lnmax(votes, gamma=10.0, generator=torch.Generator().manual_seed(0))
    tensor([0, 1])
    """
    counts = _check_votes(votes, num_teachers)
    scale = 1 / _check_scale("gamma", gamma)
    # Laplace(0, b) = b * (E1 - E2) with E1, E2 ~ Exp(1); torch.distributions cannot take a generator.
    first = torch.empty_like(counts).exponential_(generator=generator)  # (Q, C)
    second = torch.empty_like(counts).exponential_(generator=generator)  # (Q, C)
    return (counts + scale * (first - second)).argmax(dim=1)


def gnmax(
    votes: torch.Tensor, sigma: float, generator: torch.Generator, num_teachers: Optional[int] = None
) -> torch.Tensor:
    """argmax of the votes plus N(0, sigma^2) noise on every count (Papernot et al. 2018, Section 4).

    >>> votes = torch.tensor([[240, 5, 5], [3, 200, 47]])
    >>> gnmax(votes, sigma=1.0, generator=torch.Generator().manual_seed(0))
    tensor([0, 1])
    """
    counts = _check_votes(votes, num_teachers)
    sigma = _check_scale("sigma", sigma)
    noise = torch.randn(counts.shape, generator=generator, dtype=counts.dtype, device=counts.device)  # (Q, C)
    return (counts + sigma * noise).argmax(dim=1)


def confident_gnmax(
    votes: torch.Tensor,
    threshold: float,
    sigma1: float,
    sigma2: float,
    generator: torch.Generator,
    num_teachers: Optional[int] = None,
) -> ConfidentGNMaxResult:
    """Answer a query with GNMax(sigma2) only if its max vote plus N(0, sigma1^2) reaches ``threshold``.

    Papernot et al. 2018, Algorithm 1. Noise for both steps is drawn for every query, so the generator
    advances the same way whatever is answered.

    >>> votes = torch.tensor([[240, 5, 5], [90, 80, 80]])
    >>> confident_gnmax(votes, 200.0, 1.0, 1.0, generator=torch.Generator().manual_seed(0))
    ConfidentGNMaxResult(labels=tensor([ 0, -1]), answered=tensor([ True, False]))
    """
    counts = _check_votes(votes, num_teachers)
    sigma1, sigma2 = _check_scale("sigma1", sigma1), _check_scale("sigma2", sigma2)
    teachers = int(counts.sum(dim=1).max()) if counts.shape[0] else math.inf
    limit = num_teachers if num_teachers is not None else teachers
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= limit:
        raise ValueError(f"threshold must lie in [0, {limit}] (the number of teachers), got {threshold!r}")
    check_noise = torch.randn(counts.shape[0], generator=generator, dtype=counts.dtype, device=counts.device)  # (Q,)
    answered = counts.max(dim=1).values + sigma1 * check_noise >= threshold  # (Q,)
    labels = gnmax(counts, sigma2, generator)  # (Q,)
    return ConfidentGNMaxResult(torch.where(answered, labels, torch.full_like(labels, UNANSWERED)), answered)
