"""Noisy aggregation of a vote matrix with one mechanism, and its RDP privacy cost.

Defaults are the papers' MNIST settings: LNMax gamma = 0.05 (Papernot et al. 2017, 100 queries at
eps 2.04), GNMax sigma = 40 and Confident-GNMax T = 200, sigma1 = 150, sigma2 = 40 (Papernot et al. 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from pate_lightning.privacy import (
    MECHANISMS,
    RELEASED,
    RELEASED_MECHANISMS,
    UNANSWERED,
    RDPAccountant,
    confident_gnmax,
    gnmax,
    lnmax,
    release_data_dependent_epsilon,
)

PARAMETERS = {"lnmax": ("gamma",), "gnmax": ("sigma",), "confident_gnmax": ("threshold", "sigma1", "sigma2")}


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1) (e.g. 1e-5, below 1 / the number of training images), got {delta!r}")
    return float(delta)


@dataclass(frozen=True)
class Mechanism:
    """One aggregation mechanism and its parameters (only those of ``name`` are used).

    Args:
        name: ``lnmax``, ``gnmax`` or ``confident_gnmax``.
        gamma: LNMax inverse Laplace scale (noise Laplace(0, 1/gamma) on each count).
        sigma: GNMax noise standard deviation.
        threshold: Confident-GNMax threshold T on the noisy max vote, in [0, number of teachers].
        sigma1: Confident-GNMax noise on the threshold check.
        sigma2: Confident-GNMax noise on the answer (a GNMax).
    """

    name: str = "confident_gnmax"
    gamma: float = 0.05
    sigma: float = 40.0
    threshold: float = 200.0
    sigma1: float = 150.0
    sigma2: float = 40.0

    def check(self, num_teachers: Optional[int] = None) -> "Mechanism":
        """Raise a ValueError naming the setting if a used parameter is out of range."""
        if self.name not in MECHANISMS:
            raise ValueError(f"unknown mechanism {self.name!r}; choose one of {MECHANISMS}")
        for parameter in PARAMETERS[self.name]:
            if parameter == "threshold":
                value = self.threshold
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                    raise ValueError(f"threshold must be a finite number >= 0, got {value!r}")
                if num_teachers is not None and value > num_teachers:
                    raise ValueError(f"threshold={value:g} exceeds the {num_teachers} teachers voting: no query could "
                                     "pass the check; lower threshold or use more teachers")
            else:
                _positive(parameter, getattr(self, parameter))
        return self

    @property
    def parameters(self) -> dict[str, float]:
        return {parameter: float(getattr(self, parameter)) for parameter in PARAMETERS[self.name]}

    def describe(self) -> str:
        """``confident_gnmax(T=200, sigma1=150, sigma2=40)``."""
        short = {"threshold": "T"}
        return f"{self.name}({', '.join(f'{short.get(k, k)}={v:g}' for k, v in self.parameters.items())})"


def aggregate(
    votes: torch.Tensor, mechanism: Mechanism, generator: torch.Generator, num_teachers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy labels (Q,) (``UNANSWERED`` where declined) and the answered mask (Q,) bool."""
    mechanism.check(num_teachers)
    p = mechanism.parameters
    if mechanism.name == "confident_gnmax":
        labels, answered = confident_gnmax(votes, p["threshold"], p["sigma1"], p["sigma2"], generator, num_teachers)
        return labels, answered
    noisy = lnmax if mechanism.name == "lnmax" else gnmax
    labels = noisy(votes, next(iter(p.values())), generator, num_teachers)
    return labels, torch.ones_like(labels, dtype=torch.bool)


def account(
    votes: torch.Tensor, answered: torch.Tensor, mechanism: Mechanism, delta: float, seed: int = 0
) -> dict[str, Any]:
    """RDP accounting of the queries asked: data-independent and data-dependent epsilon at ``delta``.

    Confident-GNMax pays the threshold check on every query asked and GNMax only on answered ones. For GNMax
    and Confident-GNMax the data-dependent epsilon is also released by smooth sensitivity: its bound with the
    release cost, one noisy draw from ``numpy.random.default_rng(seed)`` and the release's parameters.
    """
    accountant = RDPAccountant()
    extra = {"answered": answered} if mechanism.name == "confident_gnmax" else {}
    accountant.step(mechanism=mechanism.name, votes=votes, **mechanism.parameters, **extra)
    privacy = {"accountant": "RDP", **accountant.get_epsilon(check_delta(delta))}
    privacy.update(epsilon_data_dependent_with_release=None, epsilon_data_dependent_released=None, smooth_sensitivity=None)
    if mechanism.name in RELEASED_MECHANISMS:
        votes_array = votes.detach().cpu().numpy()
        release = release_data_dependent_epsilon(
            votes_array, mechanism=mechanism.name, delta=delta, **mechanism.parameters,
            **{k: v.detach().cpu().numpy() for k, v in extra.items()},
        )
        privacy.update(
            epsilon_data_dependent_with_release=release.epsilon,
            epsilon_data_dependent_released=release.draw(np.random.default_rng(seed)),
            smooth_sensitivity={**release.as_dict(), "seed": seed},
            data_dependent_released=True,
            note=RELEASED,
        )
    return privacy


def plurality(votes: torch.Tensor) -> torch.Tensor:
    """The noiseless vote winner (Q,), for reporting how much the noise costs; never released."""
    return votes.argmax(dim=1)


__all__ = ["Mechanism", "PARAMETERS", "UNANSWERED", "account", "aggregate", "check_delta", "plurality"]
