"""Noisy aggregation of a vote matrix with one mechanism, and its RDP privacy cost.

Defaults are the papers' MNIST settings: LNMax gamma = 0.05 (Papernot et al. 2017, 100 queries at
eps 2.04), GNMax sigma = 40 and Confident-GNMax T = 200, sigma1 = 150, sigma2 = 40 (Papernot et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from pate_lightning.privacy import (
    CONVERSION_REFERENCES,
    CONVERSIONS,
    NOT_RELEASED,
    RELEASED,
    RELEASED_MECHANISMS,
    UNANSWERED,
    RDPAccountant,
    ReleaseSettings,
    confident_gnmax,
    fixed_release,
    gnmax,
    lnmax,
    release_data_dependent_epsilon,
    release_rdp_curve,
)
from pate_lightning.privacy.release_conditions import release_refusal
from pate_lightning.privacy.release_order import settings_for_run
from pate_lightning.privacy.mechanisms import PARAMETERS, check_parameters


def check_conversion(conversion: str) -> str:
    if conversion not in CONVERSIONS:
        raise ValueError(f"unknown conversion {conversion!r}; choose one of {CONVERSIONS} (balle2020: the tighter, default)")
    return conversion


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
        check_parameters(self.name, vars(self), num_teachers)
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


ANSWERED_ONLY_NOTE = (
    "epsilon_data_independent_answered_only charges GNMax(sigma2) on the answered queries only; using the realised "
    "count needs a privacy-filter argument not made here, so the headline epsilon_data_independent charges every "
    "query asked."
)
DATA_CHOSEN_NOTE = (
    "The reference scripts' release: order and sigma_ss chosen from the votes, so the noise scale depends on the "
    "data; not a valid Theorem 23 release, kept as a diagnostic."
)


def release_settings(
    mechanism: Mechanism, release: ReleaseSettings, num_queries: int, num_classes: int, num_teachers: int,
    delta: float, conversion: str,
) -> Optional[ReleaseSettings]:
    """The release's resolved settings (a null order by the rule of ``release_order``); None where nothing is released."""
    if mechanism.name not in RELEASED_MECHANISMS:
        return None
    return settings_for_run(release, mechanism.name, mechanism.parameters, num_queries, num_classes, num_teachers,
                            delta, conversion)


def refused_release(mechanism: Mechanism, fixed: Optional[ReleaseSettings], num_classes: int,
                    num_teachers: int) -> Optional[str]:
    """Why the data-dependent epsilon may not be released at the resolved settings ``fixed``
    (``release_conditions``), or None; public values only."""
    if fixed is None:
        return None
    return release_refusal(mechanism.name, mechanism.parameters, num_classes, num_teachers, fixed.order)


@dataclass(frozen=True)
class Accounting:
    """One run's privacy accounting, split by what may be published.

    Args:
        public: publishable values (public parameters, counts, data-independent epsilons, the released draw).
        diagnostics: values computed from the un-noised votes; never for release.
        ledger_steps: PATE's own ledger entries (``PrivacyLedger.step`` keyword arguments): the votes' a-priori
            curve and, where made, the release's Theorem 23 curve; both functions of public parameters.
    """

    public: dict[str, Any]
    diagnostics: dict[str, Any]
    ledger_steps: list[dict[str, Any]]


def account(
    votes: torch.Tensor, answered: torch.Tensor, mechanism: Mechanism, delta: float, generator: np.random.Generator,
    release: ReleaseSettings = ReleaseSettings(), conversion: str = "balle2020",
) -> Accounting:
    """RDP accounting of the queries asked, and (GNMax, Confident-GNMax) a Theorem 23 release of the data-dependent epsilon.

    The headline data-independent epsilon is fixed before the run (every asked query pays in full); the
    release is made at the fixed ``release`` settings with one draw from ``generator``, unless conditions
    C5/C6 fail for them (checked on public parameters before the votes are read): then only the
    data-independent epsilon is published and ``release_refused`` says why.
    """
    check_delta(delta)
    check_conversion(conversion)
    num_teachers = int(votes[0].sum()) if len(votes) else 1
    fixed = release_settings(mechanism, release, len(votes), votes.shape[1], num_teachers, delta, conversion)
    refusal = refused_release(mechanism, fixed, votes.shape[1], num_teachers)
    accountant = RDPAccountant()
    extra = {"answered": answered} if mechanism.name == "confident_gnmax" else {}
    accountant.step(mechanism=mechanism.name, votes=votes, **mechanism.parameters, **extra)
    epsilons = accountant.get_epsilon(delta, conversion)
    public = {
        "accountant": "RDP",
        "delta": delta,
        "conversion": conversion,
        "conversion_reference": CONVERSION_REFERENCES[conversion],
        "num_queries": epsilons["num_queries"],
        "num_answered": epsilons["num_answered"],
        "epsilon_data_independent": epsilons["epsilon_data_independent"],
        "order_data_independent": epsilons["order_data_independent"],
        "epsilon_data_independent_answered_only": epsilons["epsilon_data_independent_answered_only"],
        "answered_only_note": ANSWERED_ONLY_NOTE,
        "data_dependent_released": False,
        "epsilon_data_dependent_released": None,
        "release": None,
        "release_refused": refusal,
        "note": NOT_RELEASED if refusal is None else f"The data-dependent epsilon is not released: {refusal}.",
    }
    diagnostics = {
        "epsilon_data_dependent": epsilons["epsilon_data_dependent"],
        "order_data_dependent": epsilons["order_data_dependent"],
        "release_fixed": None,
        "release_data_chosen": None,
    }
    steps = [{"stage": "pate", "name": mechanism.describe(), "rdp": accountant.rdp_data_independent,
              "note": "noisy votes, data-independent RDP, every asked query charged in full"}]
    if fixed is not None and refusal is None:
        arrays = {k: v.detach().cpu().numpy() for k, v in extra.items()}
        votes_array = votes.detach().cpu().numpy()
        made = fixed_release(votes_array, mechanism=mechanism.name, delta=delta, settings=fixed, conversion=conversion,
                             **mechanism.parameters, **arrays)
        public.update(data_dependent_released=True, epsilon_data_dependent_released=made.draw(generator),
                      release=made.public(), note=RELEASED)
        chosen = release_data_dependent_epsilon(votes_array, mechanism=mechanism.name, delta=delta,
                                                conversion=conversion, **mechanism.parameters, **arrays)
        diagnostics.update(release_fixed=made.diagnostic(),
                           release_data_chosen={**chosen.diagnostic(), "note": DATA_CHOSEN_NOTE})
        steps.append({"stage": "pate", "name": "smooth_sensitivity_release",
                      "rdp": release_rdp_curve(fixed.beta, fixed.sigma_ss, accountant.orders),
                      "note": "Theorem 23 release of the data-dependent epsilon at fixed order, beta, sigma_ss"})
    return Accounting(public, diagnostics, steps)


def plurality(votes: torch.Tensor) -> torch.Tensor:
    """The noiseless vote winner (Q,), for reporting how much the noise costs; never released."""
    return votes.argmax(dim=1)


__all__ = ["Accounting", "Mechanism", "PARAMETERS", "UNANSWERED", "account", "aggregate", "check_conversion",
           "check_delta", "plurality", "refused_release", "release_settings"]
