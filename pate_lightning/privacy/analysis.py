"""Rényi-DP analysis of PATE's noisy aggregators: pure functions of numpy arrays.

References: Papernot et al. 2017 (arXiv:1610.05755, LNMax), Papernot et al. 2018 (arXiv:1802.08908,
GNMax and Confident-GNMax; reference code ``research/pate_2018/core.py`` of tensorflow/privacy),
Mironov 2017 (RDP), Bun & Steinke 2016 (zCDP), Balle et al. 2020 (RDP -> DP conversion, the default).

Neighbouring datasets differ in one teacher's vote on each query, so one teacher moves one count
down by 1 and another up by 1. Every curve is returned as an array over ``orders`` (lambda > 1).
Data-dependent bounds are functions of the votes themselves and are not DP guarantees as they stand;
``smooth_sensitivity`` and ``release`` release the GNMax / Confident-GNMax ones privately.
"""

from __future__ import annotations

import math
from typing import Any, Sequence, Union

import numpy as np
import scipy.special
import scipy.stats

ArrayLike = Union[Sequence[float], np.ndarray]

# Dense at small orders (many-query regime) and sparse up to 1024 (data-dependent, small q).
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5]
    + [float(order) for order in range(5, 65)]
    + [80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0, 768.0, 1024.0]
)
# The RDP -> (eps, delta) conversions; the first is the default and every report names the one it used.
CONVERSIONS = ("balle2020", "classic")
CONVERSION_REFERENCES = {
    "balle2020": "Balle et al. 2020 (arXiv:1905.09982, Thm. 21; Canonne et al. arXiv:2004.00010, Prop. 12), "
                 "as dp-accounting's RdpAccountant",
    "classic": "Mironov 2017 (arXiv:1702.07476, Prop. 3)",
}


def _check_positive(name: str, value: float) -> float:
    numeric = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not (numeric and 0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_orders(orders: ArrayLike) -> np.ndarray:
    orders = np.atleast_1d(np.asarray(orders, dtype=float))
    if orders.ndim != 1 or orders.size == 0 or not np.all(np.isfinite(orders)) or np.any(orders <= 1):
        raise ValueError(f"orders must be a non-empty 1-D sequence of finite numbers > 1, got {orders!r}")
    return orders


def _check_votes(votes: ArrayLike) -> np.ndarray:
    votes = np.asarray(votes, dtype=float)
    if votes.ndim != 1 or votes.size < 2:
        raise ValueError(f"votes must be a 1-D histogram over at least 2 classes, got shape {votes.shape}")
    if not np.all(np.isfinite(votes)) or np.any(votes < 0):
        raise ValueError(f"votes must be finite non-negative counts, got {votes.tolist()}")
    return votes


def _check_logq(logq: float) -> float:
    if not (isinstance(logq, (int, float, np.floating)) and logq <= 0):  # also rejects nan
        raise ValueError(f"logq is the log of a probability and must be <= 0, got {logq!r}")
    return float(logq)


def _log1mexp(x: ArrayLike) -> Any:
    """log(1 - exp(x)) for x <= 0, stable at both ends (-inf at 0), elementwise."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.where(x < -math.log(2), np.log1p(-np.exp(np.minimum(x, 0))), np.log(-np.expm1(np.minimum(x, 0))))
    return out[()]  # a numpy float for a scalar x, so scalar callers keep scalar arithmetic


def theorem6_bound(logq: ArrayLike, sigma: float, orders: ArrayLike) -> np.ndarray:
    """Theorem 6's data-dependent RDP bound of GNMax (Papernot et al. 2018), broadcast over logq and orders.

    The bare formula, with mu2 = sigma sqrt(log 1/q), mu1 = mu2 + 1 (Prop. 10) and eps_i = mu_i / sigma^2;
    where it applies is the caller's to check (``rdp_gnmax_data_dependent``; the smooth-sensitivity
    analysis uses it only below its ``logq0``).

    >>> bound = theorem6_bound(-20.0, 40.0, [2, 16])  # strong consensus: far below order / sigma^2
    >>> bool((bound < rdp_gnmax_data_independent(40.0, [2, 16]) / 1000).all())
    True
    """
    logq, orders = np.asarray(logq, dtype=float), np.asarray(orders, dtype=float)
    mu2 = sigma * np.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    log1q = _log1mexp(logq)
    log_a = log1q - _log1mexp((logq + eps2) * (1 - 1 / mu2))
    log_b = eps1 - logq / (mu1 - 1)
    return np.logaddexp(log1q + (orders - 1) * log_a, logq + (orders - 1) * log_b) / (orders - 1)


def rdp_lnmax_data_independent(gamma: float, orders: ArrayLike) -> np.ndarray:
    """RDP of one LNMax query (Laplace noise of scale 1/gamma on each vote count).

    The noisy histogram has L1 sensitivity 2, so a query is eps-DP with eps = 2 * gamma (PATE 2017,
    Section 3). Pure eps-DP gives RDP <= eps at every order (Mironov 2017, Prop. 3) and
    (eps^2 / 2)-zCDP, i.e. RDP <= lambda * eps^2 / 2 (Bun & Steinke 2016, Prop. 3.3); we take the min.

    >>> rdp_lnmax_data_independent(0.05, [2, 10, 1000])
    array([0.01, 0.05, 0.1 ])
    """
    eps = 2 * _check_positive("gamma", gamma)
    orders = _check_orders(orders)
    return np.minimum(eps, orders * eps**2 / 2)


def compute_logq_lnmax(votes: ArrayLike, gamma: float) -> float:
    """Log of an upper bound on Pr[LNMax output != plurality class] (PATE 2017, Lemma 4).

    Class j beats the plurality with probability <= (2 + gamma * gap) / (4 exp(gamma * gap)); union bound
    over j, capped at 1 - 1/classes since the plurality is the likeliest output.

    >>> round(compute_logq_lnmax([10, 0], gamma=1.0), 4)  # log(12 / (4 e^10))
    -8.9014
    """
    votes, gamma = _check_votes(votes), _check_positive("gamma", gamma)
    plurality = int(np.argmax(votes))
    gaps = gamma * (votes[plurality] - np.delete(votes, plurality))
    logq = scipy.special.logsumexp(np.log(2 + gaps) - math.log(4) - gaps)
    return float(min(logq, math.log1p(-1 / votes.size)))


def rdp_lnmax_data_dependent(logq: float, gamma: float, orders: ArrayLike) -> np.ndarray:
    """Data-dependent RDP of one LNMax query given ``logq`` (PATE 2017, Theorem 3).

    With eps = 2 gamma and q < 1 / (e^eps + 1): RDP <= log((1-q) ((1-q) / (1 - e^eps q))^(lambda-1)
    + q e^(eps (lambda-1))) / (lambda - 1). Never above the data-independent curve.

    >>> rdp_lnmax_data_dependent(-20.0, 0.05, [2, 10]).round(8)
    array([0., 0.])
    >>> rdp_lnmax_data_dependent(0.0, 0.05, [2, 10])  # q = 1: data-independent
    array([0.01, 0.05])
    """
    logq, eps = _check_logq(logq), 2 * _check_positive("gamma", gamma)
    data_independent = rdp_lnmax_data_independent(gamma, orders)
    orders = _check_orders(orders)
    if logq == -math.inf:
        return np.zeros_like(orders)
    if logq > -math.log1p(math.exp(eps)):  # Theorem 3 needs q < 1 / (e^eps + 1)
        return data_independent
    log1q = _log1mexp(logq)
    log_ratio = log1q - _log1mexp(eps + logq)  # log((1-q) / (1 - e^eps q))
    log_t = np.logaddexp(log1q + (orders - 1) * log_ratio, logq + eps * (orders - 1))
    return np.minimum(data_independent, log_t / (orders - 1))


def rdp_gnmax_data_independent(sigma: float, orders: ArrayLike) -> np.ndarray:
    """RDP of one GNMax query: lambda / sigma^2 (Papernot et al. 2018, Prop. 8).

    Gaussian noise N(0, sigma^2) on a histogram of L2 sensitivity sqrt(2); argmax is post-processing.

    >>> rdp_gnmax_data_independent(40.0, [2, 16])
    array([0.00125, 0.01   ])
    """
    sigma, orders = _check_positive("sigma", sigma), _check_orders(orders)
    return orders / sigma**2


def compute_logq_gnmax(votes: ArrayLike, sigma: float) -> float:
    """Log of an upper bound on Pr[GNMax output != plurality class] (Papernot et al. 2018, Prop. 7).

    Class j beats the plurality i* when Z_j - Z_i* ~ N(0, 2 sigma^2) exceeds the gap n_i* - n_j; union
    bound over j in log space, capped at 1 - 1/classes.

    >>> round(compute_logq_gnmax([250, 0, 0], sigma=40.0), 3)  # log(2 * Pr[N(0,1) > 250 / (40 sqrt 2)])
    -11.523
    >>> round(compute_logq_gnmax([5, 5], sigma=1.0), 4)  # a tie: q <= 1/2
    -0.6931
    """
    votes, sigma = _check_votes(votes), _check_positive("sigma", sigma)
    plurality = int(np.argmax(votes))
    gaps = votes[plurality] - np.delete(votes, plurality)
    logq = scipy.special.logsumexp(scipy.stats.norm.logsf(gaps, scale=math.sqrt(2) * sigma))
    return float(min(logq, math.log1p(-1 / votes.size)))


def rdp_gnmax_data_dependent(logq: float, sigma: float, orders: ArrayLike) -> np.ndarray:
    """Data-dependent RDP of one GNMax query given ``logq`` (Papernot et al. 2018, Theorem 6).

    Uses mu2 = sigma sqrt(log 1/q), mu1 = mu2 + 1 (Prop. 10) with eps_i = mu_i / sigma^2. The bound applies
    at orders lambda < mu1 when mu2 > 1, q e^eps2 < 1 and q lies where the bound increases in q (Lemma 9);
    elsewhere, and wherever it is larger, the data-independent lambda / sigma^2 is returned.

    >>> rdp_gnmax_data_dependent(-20.0, 40.0, [2, 16, 1024]).round(8)
    array([0.  , 0.  , 0.64])
    >>> rdp_gnmax_data_dependent(-0.5, 40.0, [2, 16])  # weak consensus: data-independent
    array([0.00125, 0.01   ])
    """
    logq, data_independent = _check_logq(logq), rdp_gnmax_data_independent(sigma, orders)
    orders = _check_orders(orders)
    if logq == -math.inf:  # the output is fixed
        return np.zeros_like(orders)
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    applies = orders < mu1
    if mu2 <= 1 or not applies.any() or logq + eps2 >= 0:
        return data_independent
    if logq > (mu2 - 1) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1)) + math.log(mu2 / (mu2 - 1))):
        return data_independent  # Lemma 9: outside the range where the bound increases in q
    bound = theorem6_bound(logq, sigma, orders)
    return np.where(applies, np.minimum(data_independent, bound), data_independent)


def compute_logpr_answered(threshold: float, sigma1: float, votes: ArrayLike) -> float:
    """Log Pr[max vote + N(0, sigma1^2) >= threshold], the Confident-GNMax check (2018, Algorithm 1).

    >>> round(compute_logpr_answered(200.0, 150.0, [250, 0]), 4)  # Pr[N(0,1) >= -1/3]
    -0.4611
    """
    votes, sigma1 = _check_votes(votes), _check_positive("sigma1", sigma1)
    num_teachers = float(votes.sum())
    if not (isinstance(threshold, (int, float, np.floating, np.integer)) and 0 <= threshold <= num_teachers):
        raise ValueError(f"threshold must lie in [0, {num_teachers:g}] (the number of teachers), got {threshold!r}")
    return float(scipy.stats.norm.logsf(threshold - votes.max(), scale=sigma1))


def rdp_threshold_data_independent(sigma1: float, orders: ArrayLike) -> np.ndarray:
    """RDP of the noisy threshold check: lambda / (2 sigma1^2).

    max_j n_j has sensitivity 1 (not sqrt(2) as the histogram), so this is the Gaussian mechanism, i.e.
    GNMax's curve at sigma = sqrt(2) sigma1 (2018, Section 4.1; ``compute_rdp_data_independent_threshold``).

    >>> rdp_threshold_data_independent(150.0, [2, 45])
    array([4.44444444e-05, 1.00000000e-03])
    """
    return rdp_gnmax_data_independent(math.sqrt(2) * _check_positive("sigma1", sigma1), orders)


def rdp_threshold_data_dependent(logpr_answered: float, sigma1: float, orders: ArrayLike) -> np.ndarray:
    """Data-dependent RDP of the threshold check given ``logpr_answered`` (2018, Theorem 6).

    The check has two outcomes, so q is the probability of the less likely one; Theorem 6 then applies
    with GNMax's curve at sqrt(2) sigma1.

    >>> bool(np.all(rdp_threshold_data_dependent(-30.0, 150.0, DEFAULT_ORDERS)
    ...             <= rdp_threshold_data_independent(150.0, DEFAULT_ORDERS)))
    True
    """
    logpr_answered = _check_logq(logpr_answered)
    logq = min(logpr_answered, _log1mexp(logpr_answered))
    return rdp_gnmax_data_dependent(logq, math.sqrt(2) * _check_positive("sigma1", sigma1), orders)


def rdp_to_dp(orders: ArrayLike, rdp: ArrayLike, delta: float, conversion: str = "balle2020") -> tuple[float, float]:
    """Convert an RDP curve to (eps, delta)-DP; returns ``(eps, best_order)``.

    ``"balle2020"`` (the default; Balle et al. 2020, Thm. 21, exactly as dp-accounting's
    ``rdp_privacy_accountant.compute_epsilon``): eps = rdp + log((lambda - 1) / lambda)
    - (log delta + log lambda) / (lambda - 1), and 0 where the KL bound delta >= sqrt(1 - e^-rdp) already holds;
    orders <= 1.01 are skipped (unstable) and the result is floored at 0.
    ``"classic"`` (Mironov 2017, Prop. 3): eps = rdp + log(1/delta) / (lambda - 1).
    Infinite RDP at an order (a bound that does not hold there) is allowed; that order is never chosen.

    >>> eps, order = rdp_to_dp([2, 11, 101], [0.02, 0.1, 2.0], delta=1e-5, conversion="classic")
    >>> round(eps, 4), order  # 0.1 + log(1e5) / 10
    (1.2513, 11.0)
    >>> rdp_to_dp([2, 11, 101], [0.02, 0.1, 2.0], delta=1e-5)[0] < eps  # the improved conversion is tighter
    True
    """
    orders = _check_orders(orders)
    rdp = np.atleast_1d(np.asarray(rdp, dtype=float))
    if rdp.shape != orders.shape or np.any(np.isnan(rdp)) or np.any(rdp < 0):
        raise ValueError(f"rdp must be non-negative with one value per order ({orders.size}), got {rdp!r}")
    if not (isinstance(delta, (float, int, np.floating)) and 0 < delta < 1):
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    with np.errstate(invalid="ignore"):  # inf - inf does not arise: orders are finite
        if conversion == "classic":
            eps = rdp + math.log(1 / delta) / (orders - 1)
        elif conversion == "balle2020":
            eps = rdp + np.log1p(-1 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
            eps = np.where(orders > 1.01, eps, math.inf)
            eps = np.where(delta**2 + np.expm1(-rdp) > 0, 0.0, eps)  # the KL bound already gives delta
        else:
            raise ValueError(f"conversion must be one of {CONVERSIONS}, got {conversion!r}")
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(orders[best])
