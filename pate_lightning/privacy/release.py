"""Release of the data-dependent epsilon of GNMax / Confident-GNMax by smooth sensitivity (2018, Section 4.2).

Follows tensorflow/privacy ``research/pate_2018/ICLR2018/smooth_sensitivity_table.py`` and
``rdp_cumulative.py``: pick the order lambda that minimises the plain data-dependent epsilon, take
beta = 0.49 / lambda (inside Theorem 23's range lambda < 1 / (2 beta)), sum the per-query local
sensitivities at lambda, and add SS * N(0, sigma_ss^2) to the data-dependent RDP at lambda with
sigma_ss = (lambda e^(2 beta) / SS)^(1/3). The epsilon bound then includes Theorem 23's release cost.

Two differences from the reference scripts, both conservative or exact: they weight each GNMax step by
Pr[answered] (an expected cost), while this charges the answered queries, as ``RDPAccountant`` does; and
each query's ls[d] is made non-decreasing in d before summing, since a sum needs bounds over the whole
ball of radius d (a single query's smooth sensitivity does not change).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from pate_lightning.privacy import analysis
from pate_lightning.privacy import smooth_sensitivity as ss
from pate_lightning.privacy.accountant import RDPAccountant, _query_arrays
from pate_lightning.privacy.analysis import ArrayLike

BETA_FRACTION = 0.49  # beta = 0.49 / order, as rdp_cumulative.py; Theorem 23 needs beta < 0.5 / order
RELEASED_MECHANISMS = ("gnmax", "confident_gnmax")
RELEASED = (
    "The data-dependent epsilon is released with smooth sensitivity (Papernot et al. 2018, Section 4.2): "
    "the data-dependent RDP at one order plus Gaussian noise scaled by its beta-smooth sensitivity. "
    "epsilon_data_dependent_with_release adds the release's own cost (Theorem 23) and is what the paper reports; "
    "epsilon_data_dependent_released is one noisy draw, the differentially private figure."
)


@dataclass(frozen=True)
class SmoothSensitivityRelease:
    """The parameters and bound of one smooth-sensitivity release; ``draw`` gives the released value.

    Args:
        order: the Rényi order lambda the release is made at.
        beta: the smoothing parameter.
        smooth_sensitivity: SS_beta of the data-dependent RDP at ``order``.
        sigma_ss: the noise multiplier (None where SS = 0: the RDP is then the same for every vote histogram).
        noise_std: SS * sigma_ss, the standard deviation of the noise on the RDP (and on epsilon).
        rdp_data_dependent: the data-dependent RDP at ``order`` (not private by itself).
        rdp_release: the RDP cost of the release at ``order`` (Theorem 23).
        epsilon: the epsilon at ``delta`` of the data-dependent RDP plus the release cost.
        delta, conversion: as in ``analysis.rdp_to_dp``.
    """

    order: float
    beta: float
    smooth_sensitivity: float
    sigma_ss: Optional[float]
    noise_std: float
    rdp_data_dependent: float
    rdp_release: float
    epsilon: float
    delta: float
    conversion: str

    def draw(self, generator: np.random.Generator) -> float:
        """One released epsilon: the noisy RDP (floored at 0, post-processing) plus the release cost."""
        noisy = max(0.0, self.rdp_data_dependent + self.noise_std * float(generator.standard_normal()))
        return analysis.rdp_to_dp([self.order], [noisy + self.rdp_release], self.delta, self.conversion)[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num_teachers(votes: np.ndarray) -> int:
    totals = votes.sum(axis=1)
    if totals.size == 0 or not np.all(totals == totals[0]) or totals[0] < 1 or totals[0] != round(totals[0]):
        raise ValueError(f"every query must have the same whole number (>= 1) of votes, got row sums {np.unique(totals)}")
    return int(round(totals[0]))


def local_sensitivities(
    votes: np.ndarray, answered: np.ndarray, mechanism: str, order: float, parameters: dict[str, float]
) -> tuple[float, np.ndarray]:
    """The data-dependent RDP at ``order`` that is released, and ls[d] of it summed over the queries."""
    num_teachers = _num_teachers(votes)
    sigma = parameters["sigma"] if mechanism == "gnmax" else parameters["sigma2"]
    unanimous = np.eye(votes.shape[1])[0] * num_teachers
    # Where even unanimous votes get the data-independent cost, every histogram does (reference
    # is_data_independent_always_opt_gaussian): the GNMax term is a constant with sensitivity 0.
    gnmax_constant = analysis.compute_logq_gnmax(unanimous, sigma) >= ss.compute_logq0_gnmax(sigma, order)
    rdp, total = 0.0, np.zeros(num_teachers)
    for row, is_answered in zip(votes, answered):
        if mechanism == "confident_gnmax":
            threshold, sigma1 = parameters["threshold"], parameters["sigma1"]
            logpr = analysis.compute_logpr_answered(threshold, sigma1, row)
            rdp += float(analysis.rdp_threshold_data_dependent(logpr, sigma1, [order])[0])
            ls = ss.local_sensitivity_bounds_threshold(row, num_teachers, threshold, sigma1, order)
            total += np.maximum.accumulate(ls)
        if is_answered:
            rdp += float(ss.rdp_gnmax_smooth(analysis.compute_logq_gnmax(row, sigma), sigma, order)[0])
            if not gnmax_constant:
                total += np.maximum.accumulate(ss.local_sensitivity_bounds_gnmax(row, num_teachers, sigma, order))
    return rdp, total


def release_data_dependent_epsilon(
    votes: ArrayLike,
    *,
    mechanism: str,
    delta: float,
    answered: Optional[ArrayLike] = None,
    sigma: Optional[float] = None,
    threshold: Optional[float] = None,
    sigma1: Optional[float] = None,
    sigma2: Optional[float] = None,
    orders: ArrayLike = analysis.DEFAULT_ORDERS,
    conversion: str = "standard",
    order: Optional[float] = None,
    beta: Optional[float] = None,
) -> SmoothSensitivityRelease:
    """Smooth-sensitivity release of the data-dependent epsilon of GNMax or Confident-GNMax queries.

    Args:
        votes: (queries, classes) vote counts, the same number of teachers on every query.
        mechanism: ``gnmax`` or ``confident_gnmax`` (LNMax has no smooth-sensitivity analysis here).
        delta: the delta of the reported epsilon.
        answered: Confident-GNMax's (queries,) answered mask; rejected for plain GNMax.
        sigma: GNMax noise std. threshold, sigma1, sigma2: Confident-GNMax's parameters.
        orders: the orders searched for the best plain data-dependent epsilon (when ``order`` is None).
        conversion: the RDP -> DP conversion (``analysis.CONVERSIONS``).
        order: release at this order instead (fix it in advance for a release whose parameters are public).
        beta: smoothing parameter (default ``BETA_FRACTION / order``); needs order < 1 / (2 beta).

    >>> release = release_data_dependent_epsilon([[250, 0, 0]] * 20, mechanism="gnmax", sigma=40.0, delta=1e-5)
    >>> release.epsilon >= release.rdp_data_dependent > 0, round(release.beta * release.order, 2)
    (True, 0.49)
    """
    if mechanism not in RELEASED_MECHANISMS:
        raise ValueError(f"smooth-sensitivity release covers {RELEASED_MECHANISMS}, got mechanism {mechanism!r}")
    accountant = RDPAccountant(orders)
    if mechanism == "gnmax":
        accountant.step(mechanism=mechanism, votes=votes, answered=answered, sigma=sigma)
        parameters = {"sigma": sigma}
    else:
        accountant.step(mechanism=mechanism, votes=votes, answered=answered, threshold=threshold, sigma1=sigma1, sigma2=sigma2)
        parameters = {"threshold": threshold, "sigma1": sigma1, "sigma2": sigma2}
    votes_array, answered_array, _ = _query_arrays(None, votes, answered)
    if order is None:
        order = accountant.get_epsilon(delta, conversion)["order_data_dependent"]
    order = ss._check_order(order)
    beta = BETA_FRACTION / order if beta is None else beta
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < 1 / (2 * order):
        raise ValueError(f"beta must lie in (0, 1 / (2 order)) = (0, {1 / (2 * order):g}), got {beta!r}")
    rdp, total = local_sensitivities(votes_array, answered_array, mechanism, order, parameters)
    smooth = ss.smooth_sensitivity(total, beta)
    if smooth > 0:
        sigma_ss: Optional[float] = ss.release_sigma(beta, smooth, order)
        rdp_release = ss.rdp_smooth_sensitivity_gaussian(beta, sigma_ss, order)
    else:  # the released RDP is the same for every histogram: nothing to hide, nothing to pay
        sigma_ss, rdp_release = None, 0.0
    epsilon = analysis.rdp_to_dp([order], [rdp + rdp_release], delta, conversion)[0]
    return SmoothSensitivityRelease(
        order=order, beta=float(beta), smooth_sensitivity=smooth, sigma_ss=sigma_ss,
        noise_std=0.0 if sigma_ss is None else smooth * sigma_ss, rdp_data_dependent=rdp, rdp_release=rdp_release,
        epsilon=epsilon, delta=float(delta), conversion=conversion,
    )
