"""Smooth sensitivity of PATE's data-dependent RDP, so that the data-dependent epsilon can be released.

Ported (numpy/scipy, no tensorflow) from tensorflow/privacy ``research/pate_2018/smooth_sensitivity.py``
(Apache 2.0, the 'Scalable Private Learning with PATE' authors), following Papernot et al. 2018
(arXiv:1802.08908), Section 4.2 and Appendices B-C (Algorithms 3-5, Theorem 23), and Nissim, Raskhodnikova
& Smith 2007 for smooth sensitivity.

The released function is the data-dependent RDP at one order lambda. Its local sensitivity at distance d
(``ls[d]``: the largest change that one teacher can cause, over vote histograms d teachers away) is bounded
per query; the beta-smooth sensitivity is max_d e^(-beta d) ls[d]. Adding SS * N(0, sigma_ss^2) to the
released value costs the RDP of Theorem 23.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from pate_lightning.privacy import analysis
from pate_lightning.privacy.analysis import ArrayLike


def _check_order(order: float) -> float:
    if isinstance(order, bool) or not isinstance(order, (int, float, np.floating, np.integer)) or not 1 < order < math.inf:
        raise ValueError(f"order must be a finite number > 1, got {order!r}")
    return float(order)


@functools.lru_cache(maxsize=None)
def compute_logq0_gnmax(sigma: float, order: float) -> float:
    """log q0: above it the data-independent bound order / sigma^2 is the smaller one (reference ``logq0``).

    The root of Theorem 6's bound minus the data-independent bound, bracketed from ``logub`` (where
    Theorem 6's conditions hold: mu1 > order and Lemma 9) downwards.

    >>> round(compute_logq0_gnmax(40.0, 16.0), 4)
    -3.3037
    """
    sigma, order = analysis._check_positive("sigma", sigma), _check_order(order)
    independent = order / sigma**2

    def gap(logq: float) -> float:
        return float(analysis.theorem6_bound(logq, sigma, order)) - independent

    logub = min(-((1 + 1 / sigma) ** 2), -(((order - 0.99) / sigma) ** 2), -1 / sigma**2)
    mu2 = sigma * math.sqrt(-logub)
    mu1 = mu2 + 1
    if logub > (mu2 - 1) * mu2 / sigma**2 - mu2 * math.log(mu1 / (mu1 - 1) * mu2 / (mu2 - 1)):
        raise ValueError(f"Theorem 6 does not apply at sigma={sigma:g}, order={order:g} (Lemma 9 fails at log q={logub:g})")
    if gap(logub) < 0:
        return logub
    loglb = 2 * logub
    while gap(loglb) > 0:
        if loglb < -10000:
            raise ValueError(f"no log q0 above -10000 at sigma={sigma:g}, order={order:g}")
        loglb *= 1.5
    return float(scipy.optimize.brentq(gap, loglb, logub))


def rdp_gnmax_smooth(logq: ArrayLike, sigma: float, order: float) -> np.ndarray:
    """The GNMax data-dependent RDP at one order as a function of log q (the reference's ``beta(q)``).

    Theorem 6 below ``logq0`` and order / sigma^2 above, so it is non-decreasing in q (condition C5);
    where both apply it equals ``analysis.rdp_gnmax_data_dependent``. log q = -inf (a fixed output) costs 0.

    >>> rdp_gnmax_smooth([-np.inf, -20.0, -0.5], 40.0, 16.0).round(8)
    array([0.  , 0.  , 0.01])
    """
    sigma, order = analysis._check_positive("sigma", sigma), _check_order(order)
    logq = np.atleast_1d(np.asarray(logq, dtype=float))
    result = np.full(logq.shape, order / sigma**2)
    below = logq < compute_logq0_gnmax(sigma, order)
    finite = below & np.isfinite(logq)
    result[below & ~finite] = 0.0
    result[finite] = analysis.theorem6_bound(logq[finite], sigma, order)
    return result


def _log_neighbour_q(logq: np.ndarray, sigma: float, num_classes: int, shift: float) -> np.ndarray:
    """log of BU(q) (shift = +1) or BL(q) (shift = -1): q after one teacher moves (2018, Prop. 12).

    The reference writes (m-1)/2 erfc(-shift/sigma + erfcinv(2q/(m-1))); with erfc(x) = 2 Phi(-sqrt(2) x)
    this is (m-1) Phi(Phi^-1(q/(m-1)) + shift sqrt(2)/sigma), evaluated here in log space so tiny q
    do not underflow. BU is capped at 1.
    """
    log_slots = math.log(num_classes - 1)
    moved = scipy.special.ndtri_exp(np.minimum(logq - log_slots, 0.0)) + shift * math.sqrt(2) / sigma
    return np.minimum(log_slots + scipy.special.log_ndtr(moved), 0.0)


def local_sensitivity_gnmax(logq: ArrayLike, sigma: float, num_classes: int, order: float) -> np.ndarray:
    """Upper bound on the local sensitivity of ``rdp_gnmax_smooth`` at each log q (2018, Algorithm 3).

    max(beta(BU(q)) - beta(q), beta(q) - beta(BL(q))), with q in [q1, q0] moved to q1 = BL(q0), where the
    bound peaks (Proposition 13).

    >>> local_sensitivity_gnmax([-20.0], 40.0, 10, 16.0).round(6)
    array([0.])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    logq = np.atleast_1d(np.asarray(logq, dtype=float))
    if np.any(np.isnan(logq)) or np.any(logq > 0):
        raise ValueError(f"logq holds logs of probabilities and must be <= 0, got {logq!r}")
    logq0 = compute_logq0_gnmax(sigma, order)
    logq1 = float(_log_neighbour_q(np.array([logq0]), sigma, num_classes, -1.0)[0])
    logq = np.where((logq1 <= logq) & (logq <= logq0), logq1, logq)
    beta = rdp_gnmax_smooth(logq, sigma, order)
    beta_up = rdp_gnmax_smooth(_log_neighbour_q(logq, sigma, num_classes, 1.0), sigma, order)
    beta_down = rdp_gnmax_smooth(_log_neighbour_q(logq, sigma, num_classes, -1.0), sigma, order)
    return np.maximum(beta_up - beta, beta - beta_down)


def _logq_sorted(votes: np.ndarray, sigma: float) -> np.ndarray:
    """``analysis.compute_logq_gnmax`` for rows (..., classes) already sorted non-increasing."""
    gaps = votes[..., :1] - votes[..., 1:]
    terms = scipy.special.log_ndtr(-gaps / (math.sqrt(2) * sigma))
    top = terms.max(axis=-1, keepdims=True)  # a plain logsumexp: scipy's costs ~10x more in the walk's loop
    logq = top[..., 0] + np.log(np.exp(terms - top).sum(axis=-1))
    return np.minimum(logq, math.log1p(-1 / votes.shape[-1]))


def _check_teachers(num_teachers: int) -> int:
    if isinstance(num_teachers, bool) or not isinstance(num_teachers, (int, np.integer)) or num_teachers < 1:
        raise ValueError(f"num_teachers must be an int >= 1, got {num_teachers!r}")
    return int(num_teachers)


def local_sensitivity_bounds_gnmax(votes: ArrayLike, num_teachers: int, sigma: float, order: float) -> np.ndarray:
    """ls[d], d = 0 .. num_teachers - 1: local sensitivity of GNMax's RDP d teachers away (Algorithms 4-5).

    The bound peaks on the plateau q in [q1, q0]. From q > q0 the nearest histograms towards it widen the
    gap (the top class takes a vote from the runner-up); from q < q1 they narrow it (the runner-up takes one
    from the top). Distances past the walk keep the plateau value, an upper bound everywhere.

    >>> ls = local_sensitivity_bounds_gnmax([250, 0, 0], 250, 40.0, 16.0)
    >>> bool(ls[0] <= ls[-1]), ls.shape
    (True, (250,))
    """
    votes, num_teachers = analysis._check_votes(votes), _check_teachers(num_teachers)
    sigma, order = analysis._check_positive("sigma", sigma), _check_order(order)
    num_classes = votes.size
    logq0 = compute_logq0_gnmax(sigma, order)
    logq1 = float(_log_neighbour_q(np.array([logq0]), sigma, num_classes, -1.0)[0])
    logq = analysis.compute_logq_gnmax(votes, sigma)
    result = np.full(num_teachers, local_sensitivity_gnmax([logq1], sigma, num_classes, order)[0])
    if logq1 <= logq <= logq0:
        return result
    votes = np.sort(votes)[::-1].copy()  # invariant: non-increasing
    path = [logq]
    if logq > logq0:  # widen the gap one teacher at a time, keeping the runners-up sorted
        while path[-1] > logq0 and votes[1] > 0 and len(path) < num_teachers:
            votes[0], votes[1] = votes[0] + 1, votes[1] - 1
            index = 1
            while index < num_classes - 1 and votes[index] < votes[index + 1]:
                votes[index], votes[index + 1] = votes[index + 1], votes[index]
                index += 1
            path.append(float(_logq_sorted(votes, sigma)))
    else:  # narrow the gap; all steps at once, kept up to the first that reaches q1 (at the latest a tie)
        steps = np.arange(1, min(num_teachers - 1, math.ceil((votes[0] - votes[1]) / 2)) + 1)
        rows = np.tile(votes, (steps.size, 1))  # (steps, classes)
        rows[:, 0] -= steps
        rows[:, 1] += steps
        walked = _logq_sorted(rows, sigma)
        reached = np.flatnonzero(walked >= logq1)
        path += walked[: reached[0] + 1 if reached.size else walked.size].tolist()
    result[: len(path)] = local_sensitivity_gnmax(path, sigma, num_classes, order)
    return result


@functools.lru_cache(maxsize=256)
def _rdp_threshold_by_max_vote(num_teachers: int, threshold: float, sigma1: float, order: float) -> np.ndarray:
    """The threshold check's data-dependent RDP at ``order`` for max vote v = 0 .. num_teachers."""
    logprs = scipy.stats.norm.logsf(threshold - np.arange(num_teachers + 1), scale=sigma1)
    rdp = np.array([analysis.rdp_threshold_data_dependent(float(logpr), sigma1, [order])[0] for logpr in logprs])
    rdp.flags.writeable = False  # shared through the cache
    return rdp


def local_sensitivity_bounds_threshold(
    votes: ArrayLike, num_teachers: int, threshold: float, sigma1: float, order: float
) -> np.ndarray:
    """ls[d], d = 0 .. num_teachers - 1: local sensitivity of the threshold check's RDP d teachers away.

    The check's cost depends on the max vote only, which one teacher moves by at most 1, so ls[d] is the
    larger one-step change around max vote +- d (reference ``compute_local_sensitivity_bounds_threshold``).

    >>> ls = local_sensitivity_bounds_threshold([250, 0], 250, 200.0, 150.0, 16.0)
    >>> bool(np.all(ls >= 0)), ls.shape
    (True, (250,))
    """
    votes, num_teachers = analysis._check_votes(votes), _check_teachers(num_teachers)
    sigma1, order = analysis._check_positive("sigma1", sigma1), _check_order(order)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) or not (
        0 <= threshold <= num_teachers
    ):
        raise ValueError(f"threshold must lie in [0, {num_teachers}] (the number of teachers), got {threshold!r}")
    max_vote = int(round(float(votes.max())))  # the reference rounds too
    if max_vote > num_teachers:
        raise ValueError(f"the max vote {max_vote} exceeds num_teachers={num_teachers}")
    steps = np.abs(np.diff(_rdp_threshold_by_max_vote(num_teachers, float(threshold), sigma1, order)))  # (N,)
    at_vote = np.maximum(np.r_[0.0, steps], np.r_[steps, 0.0])  # (N + 1,) one step down or up from v
    distances = np.arange(max(max_vote, num_teachers - max_vote))
    up, down = max_vote + distances, max_vote - distances
    result = np.zeros(num_teachers)
    result[: distances.size] = np.maximum(
        np.where(up <= num_teachers, at_vote[np.minimum(up, num_teachers)], 0.0),
        np.where(down >= 0, at_vote[np.maximum(down, 0)], 0.0),
    )
    return result


def smooth_sensitivity(local_sensitivities: ArrayLike, beta: float) -> float:
    """The beta-smooth sensitivity max_d e^(-beta d) ls[d] (reference ``compute_discounted_max``).

    ``ls[d]`` must bound the local sensitivity over every histogram within distance d (or exactly d for a
    single query, where the discount makes the two the same).

    >>> smooth_sensitivity([1.0, 3.0, 3.0], beta=math.log(2))
    1.5
    """
    ls = np.asarray(local_sensitivities, dtype=float)
    if ls.ndim != 1 or ls.size == 0 or not np.all(np.isfinite(ls)) or np.any(ls < 0):
        raise ValueError(f"local_sensitivities must be a non-empty 1-D array of finite values >= 0, got {ls!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)) or not 0 <= beta < math.inf:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(np.max(ls * np.exp(-beta * np.arange(ls.size))))


def rdp_smooth_sensitivity_gaussian(beta: float, sigma: float, order: float) -> float:
    """RDP at ``order`` of releasing f(D) + SS_beta(D) * N(0, sigma^2) (2018, Theorem 23).

    order e^(2 beta) / sigma^2 + (beta order - log(1 - 2 order beta) / 2) / (order - 1), for
    1 < order < 1 / (2 beta).

    >>> round(rdp_smooth_sensitivity_gaussian(0.49 / 16, 10.0, 16.0), 6)
    0.333174
    """
    sigma, order = analysis._check_positive("sigma", sigma), _check_order(order)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)) or not 0 <= beta < math.inf:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if beta > 0 and not order < 1 / (2 * beta):
        raise ValueError(f"order must lie in (1, 1 / (2 beta)) = (1, {1 / (2 * beta):g}), got {order:g}")
    return order * math.exp(2 * beta) / sigma**2 + (beta * order - 0.5 * math.log1p(-2 * order * beta)) / (order - 1)


def release_sigma(beta: float, smooth: float, order: float) -> float:
    """sigma_ss = (order e^(2 beta) / SS)^(1/3), minimising order e^(2 beta) / sigma^2 + 2 SS sigma.

    That is Theorem 23's cost plus two standard deviations of the release noise, as the reference's
    ``smooth_sensitivity_table.py`` and ``rdp_cumulative.py`` choose it.

    >>> round(release_sigma(0.0, 2.0, 16.0), 6)
    2.0
    """
    smooth, order = analysis._check_positive("smooth sensitivity", smooth), _check_order(order)
    return (order * math.exp(2 * beta) / smooth) ** (1 / 3)
