"""Release of the data-dependent epsilon of GNMax / Confident-GNMax by smooth sensitivity (2018, Section 4.2).

Theorem 23 (Papernot et al. 2018) holds for an order lambda, a smoothing beta and a noise multiplier
sigma_ss fixed before the data is seen: releasing f(D) + SS_beta(D) * N(0, sigma_ss^2), with f the
data-dependent RDP at lambda, then costs ``rdp_smooth_sensitivity_gaussian(beta, sigma_ss, .)`` at every
order below 1 / (2 beta), whatever the votes. ``fixed_release`` is that release, with ``ReleaseSettings``
defaulting by a data-independent rule (``release_settings.ReleaseSettings``).

``release_data_dependent_epsilon`` keeps the reference scripts' variant (tensorflow/privacy
``research/pate_2018/ICLR2018/smooth_sensitivity_table.py``, ``rdp_cumulative.py``): lambda minimises the
plain data-dependent epsilon and sigma_ss = (lambda e^(2 beta) / SS)^(1/3), so the noise scale itself
depends on the votes. That is not a Theorem 23 release; it survives only as a diagnostic.

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
from pate_lightning.privacy.release_conditions import gnmax_sigma, gnmax_term_constant, release_refusal
from pate_lightning.privacy.release_order import settings_for_run
from pate_lightning.privacy.release_settings import BETA_FRACTION, ReleaseSettings, check_beta

RELEASED_MECHANISMS = ("gnmax", "confident_gnmax")
RELEASED = (
    "The data-dependent epsilon is released with smooth sensitivity (Papernot et al. 2018, Section 4.2, "
    "Theorem 23) at an order, beta and sigma_ss fixed before the votes are seen: the data-dependent RDP at that "
    "order plus Gaussian noise of std SS * sigma_ss, SS its beta-smooth sensitivity. "
    "epsilon_data_dependent_released is one noisy draw plus the release's own cost, the private figure; "
    "the release's RDP cost (a function of the public parameters only) is composed into the total epsilon."
)


@dataclass(frozen=True)
class SmoothSensitivityRelease:
    """The parameters and bound of one smooth-sensitivity release; ``draw`` gives the released value.

    ``public()`` holds what may be published (parameters fixed in advance and the release's cost);
    ``diagnostic()`` what is computed from the un-noised votes (never for release).

    Args:
        order: the Rényi order lambda the release is made at.
        beta: the smoothing parameter.
        smooth_sensitivity: SS_beta of the data-dependent RDP at ``order`` (a function of the votes).
        sigma_ss: the noise multiplier (data-chosen variant: None where SS = 0).
        noise_std: SS * sigma_ss, the standard deviation of the noise on the RDP (a function of the votes).
        rdp_data_dependent: the data-dependent RDP at ``order`` (not private by itself).
        rdp_release: the RDP cost of the release at ``order`` (Theorem 23).
        epsilon: the epsilon at ``delta`` of the un-noised data-dependent RDP plus the release cost.
        delta, conversion: as in ``analysis.rdp_to_dp``.
        parameters_fixed: True for a Theorem 23 release (``fixed_release``), False for the data-chosen diagnostic.
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
    parameters_fixed: bool

    def draw(self, generator: np.random.Generator) -> float:
        """One released epsilon: the noisy RDP (floored at 0, post-processing) plus the release cost."""
        noisy = max(0.0, self.rdp_data_dependent + self.noise_std * float(generator.standard_normal()))
        return analysis.rdp_to_dp([self.order], [noisy + self.rdp_release], self.delta, self.conversion)[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """Parameters fixed before the data and the release's cost: publishable (fixed releases only)."""
        if not self.parameters_fixed:
            raise ValueError("a data-chosen release has vote-dependent parameters; it is a diagnostic only")
        keys = ("order", "beta", "sigma_ss", "rdp_release", "delta", "conversion")
        return {key: getattr(self, key) for key in keys}

    def diagnostic(self) -> dict[str, Any]:
        """Everything, including what is computed from the un-noised votes; not for release."""
        return self.as_dict()


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
    sigma = gnmax_sigma(mechanism, parameters)
    gnmax_constant = gnmax_term_constant(sigma, votes.shape[1], num_teachers, order)
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


def _check_mechanism(mechanism: str, votes: ArrayLike, answered: Optional[ArrayLike], sigma, threshold, sigma1, sigma2):
    if mechanism not in RELEASED_MECHANISMS:
        raise ValueError(f"smooth-sensitivity release covers {RELEASED_MECHANISMS}, got mechanism {mechanism!r}")
    parameters = ({"sigma": sigma} if mechanism == "gnmax"
                  else {"threshold": threshold, "sigma1": sigma1, "sigma2": sigma2})
    accountant = RDPAccountant([2.0])  # checks the arguments the way the accounting does
    accountant.step(mechanism=mechanism, votes=votes, answered=answered, **parameters)
    votes_array, answered_array, _ = _query_arrays(None, votes, answered)
    return parameters, votes_array, answered_array


def fixed_release(
    votes: ArrayLike,
    *,
    mechanism: str,
    delta: float,
    settings: ReleaseSettings = ReleaseSettings(),
    answered: Optional[ArrayLike] = None,
    sigma: Optional[float] = None,
    threshold: Optional[float] = None,
    sigma1: Optional[float] = None,
    sigma2: Optional[float] = None,
    conversion: str = "balle2020",
) -> SmoothSensitivityRelease:
    """Theorem 23 release of the data-dependent RDP at the fixed ``settings`` (order, beta, sigma_ss).

    The release's cost depends on the settings only; the votes move the released value and its noise std,
    never sigma_ss. Where conditions C5/C6 fail for the settings (``release_conditions``) there is no valid
    release: a ValueError says which condition. A null ``settings.order`` is the rule's
    (``release_order.default_release_order``), from the settings and the votes' shape only.

    >>> one = fixed_release([[250, 0, 0]] * 20, mechanism="gnmax", sigma=40.0, delta=1e-5)
    >>> two = fixed_release([[100, 90, 60]] * 20, mechanism="gnmax", sigma=40.0, delta=1e-5)
    >>> one.sigma_ss == two.sigma_ss and one.rdp_release == two.rdp_release, one.order == two.order
    (True, True)
    """
    parameters, votes_array, answered_array = _check_mechanism(mechanism, votes, answered, sigma, threshold, sigma1, sigma2)
    fixed = settings_for_run(settings, mechanism, parameters, len(votes_array), votes_array.shape[1],
                             _num_teachers(votes_array), delta, conversion)
    refusal = release_refusal(mechanism, parameters, votes_array.shape[1], _num_teachers(votes_array), fixed.order)
    if refusal is not None:
        raise ValueError(refusal)
    rdp, total = local_sensitivities(votes_array, answered_array, mechanism, fixed.order, parameters)
    smooth = ss.smooth_sensitivity(total, fixed.beta)
    rdp_release = ss.rdp_smooth_sensitivity_gaussian(fixed.beta, fixed.sigma_ss, fixed.order)
    epsilon = analysis.rdp_to_dp([fixed.order], [rdp + rdp_release], delta, conversion)[0]
    return SmoothSensitivityRelease(
        order=fixed.order, beta=fixed.beta, smooth_sensitivity=smooth, sigma_ss=fixed.sigma_ss,
        noise_std=smooth * fixed.sigma_ss, rdp_data_dependent=rdp, rdp_release=rdp_release, epsilon=epsilon,
        delta=float(delta), conversion=conversion, parameters_fixed=True,
    )


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
    conversion: str = "balle2020",
    order: Optional[float] = None,
    beta: Optional[float] = None,
) -> SmoothSensitivityRelease:
    """The reference scripts' data-chosen release (a diagnostic: lambda and sigma_ss depend on the votes).

    Args:
        votes: (queries, classes) vote counts, the same number of teachers on every query.
        mechanism: ``gnmax`` or ``confident_gnmax`` (LNMax has no smooth-sensitivity analysis here).
        delta: the delta of the reported epsilon.
        answered: Confident-GNMax's (queries,) answered mask; rejected for plain GNMax.
        sigma: GNMax noise std. threshold, sigma1, sigma2: Confident-GNMax's parameters.
        orders: the orders searched for the best plain data-dependent epsilon (when ``order`` is None).
        conversion: the RDP -> DP conversion (``analysis.CONVERSIONS``).
        order: release at this order instead of the data-chosen one.
        beta: smoothing parameter (default ``BETA_FRACTION / order``); needs order < 1 / (2 beta).

    >>> release = release_data_dependent_epsilon([[250, 0, 0]] * 20, mechanism="gnmax", sigma=40.0, delta=1e-5)
    >>> release.epsilon >= release.rdp_data_dependent > 0, round(release.beta * release.order, 2)
    (True, 0.49)
    >>> release.parameters_fixed
    False
    """
    parameters, votes_array, answered_array = _check_mechanism(mechanism, votes, answered, sigma, threshold, sigma1, sigma2)
    if order is None:
        accountant = RDPAccountant(orders)
        accountant.step(mechanism=mechanism, votes=votes_array, answered=answered, **parameters)
        order = accountant.get_epsilon(delta, conversion)["order_data_dependent"]
    order = ss._check_order(order)
    beta = check_beta(BETA_FRACTION / order if beta is None else beta, order)
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
        epsilon=epsilon, delta=float(delta), conversion=conversion, parameters_fixed=False,
    )
