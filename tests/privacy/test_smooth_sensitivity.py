"""Smooth sensitivity and its release, checked against a direct transcription of the reference's loops."""

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from pate_lightning.privacy import RDPAccountant, analysis, release
from pate_lightning.privacy import smooth_sensitivity as ss

# Direct, slow transcription of tensorflow/privacy research/pate_2018/smooth_sensitivity.py and core.py.


def _ref_dep(sigma, logq, order):
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    log1q = np.log1p(-math.exp(logq))
    log_a = (order - 1) * (log1q - np.log1p(-math.exp((logq + eps2) * (1 - 1 / mu2))))
    log_b = (order - 1) * (eps1 - logq / (mu1 - 1))
    return np.logaddexp(log1q + log_a, logq + log_b) / (order - 1)


def _ref_logq0(sigma, order):
    def compare(logq):
        return _ref_dep(sigma, logq, order) - order / sigma**2

    logub = min(-((1 + 1.0 / sigma) ** 2), -(((order - 0.99) / sigma) ** 2), -1 / sigma**2)
    if compare(logub) < 0:
        return logub
    loglb = 2 * logub
    while compare(loglb) > 0:
        loglb *= 1.5
    return scipy.optimize.brentq(compare, loglb, logub)


def _ref_rdp(sigma, logq, order):
    return order / sigma**2 if logq >= _ref_logq0(sigma, order) else _ref_dep(sigma, logq, order)


def _ref_bl(q, sigma, m):
    return (m - 1) / 2 * scipy.special.erfc(1 / sigma + scipy.special.erfcinv(2 * q / (m - 1)))


def _ref_bu(q, sigma, m):
    return min(1, (m - 1) / 2 * scipy.special.erfc(-1 / sigma + scipy.special.erfcinv(2 * q / (m - 1))))


def _ref_ls(logq, sigma, m, order):
    logq0 = _ref_logq0(sigma, order)
    logq1 = math.log(_ref_bl(math.exp(logq0), sigma, m))
    if logq1 <= logq <= logq0:
        logq = logq1
    beta = _ref_rdp(sigma, logq, order)
    beta_bu = _ref_rdp(sigma, math.log(_ref_bu(math.exp(logq), sigma, m)), order)
    beta_bl = _ref_rdp(sigma, math.log(_ref_bl(math.exp(logq), sigma, m)), order)
    return max(beta_bu - beta, beta - beta_bl)


def _ref_ls_gnmax(votes, num_teachers, sigma, order):
    m = len(votes)
    logq0 = _ref_logq0(sigma, order)
    logq1 = math.log(_ref_bl(math.exp(logq0), sigma, m))
    logq = analysis.compute_logq_gnmax(votes, sigma)
    res = np.full(num_teachers, _ref_ls(logq1, sigma, m, order))
    if logq1 <= logq <= logq0:
        return res
    votes = sorted(votes, reverse=True)
    res[0] = _ref_ls(logq, sigma, m, order)
    curr_d = 0
    go_left = logq > logq0
    while (go_left and logq > logq0 and votes[1] > 0) or (not go_left and logq < logq1):
        curr_d += 1
        if go_left:
            votes[0] += 1
            votes[1] -= 1
            idx = 1
            while idx < len(votes) - 1 and votes[idx] < votes[idx + 1]:
                votes[idx], votes[idx + 1] = votes[idx + 1], votes[idx]
                idx += 1
        else:
            votes[0] -= 1
            votes[1] += 1
        logq = analysis.compute_logq_gnmax(votes, sigma)
        res[curr_d] = _ref_ls(logq, sigma, m, order)
    return res


def _ref_ls_threshold(counts, num_teachers, threshold, sigma, order):
    rdp = [analysis.rdp_threshold_data_dependent(scipy.stats.norm.logsf(threshold - v, scale=sigma), sigma, [order])[0]
           for v in range(num_teachers + 1)]

    def ls_at(v):
        steps = []
        if v > 0:
            steps.append(abs(rdp[v - 1] - rdp[v]))
        if v < num_teachers:
            steps.append(abs(rdp[v + 1] - rdp[v]))
        return max(steps)

    cur_max = int(round(max(counts)))
    ls = np.zeros(num_teachers)
    for d in range(max(cur_max, num_teachers - cur_max)):
        candidates = [ls_at(v) for v in (cur_max + d, cur_max - d) if 0 <= v <= num_teachers]
        ls[d] = max(candidates)
    return ls


VOTES = [
    [50, 0, 0, 0],  # unanimous: walks right
    [30, 12, 8, 0],
    [20, 18, 12, 0],  # weak consensus: walks left
    [25, 25, 0, 0],
    [13, 13, 12, 12],
]


@pytest.mark.parametrize("sigma, order", [(2.0, 4.0), (5.0, 8.0), (10.0, 3.0), (40.0, 16.0)])
def test_logq0_and_rdp_match_reference(sigma, order):
    logq0 = ss.compute_logq0_gnmax(sigma, order)
    assert logq0 == pytest.approx(_ref_logq0(sigma, order), rel=1e-9)
    grid = np.linspace(3 * logq0, -1e-3, 50)
    expected = [_ref_rdp(sigma, logq, order) for logq in grid]
    np.testing.assert_allclose(ss.rdp_gnmax_smooth(grid, sigma, order), expected, rtol=1e-9, atol=1e-15)
    # in these regimes it is the curve the accountant sums
    expected = [analysis.rdp_gnmax_data_dependent(logq, sigma, [order])[0] for logq in grid]
    np.testing.assert_allclose(ss.rdp_gnmax_smooth(grid, sigma, order), expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("sigma, order", [(2.0, 4.0), (5.0, 8.0), (10.0, 3.0)])
@pytest.mark.parametrize("votes", VOTES)
def test_local_sensitivity_matches_reference_loops(votes, sigma, order):
    got = ss.local_sensitivity_bounds_gnmax(votes, 50, sigma, order)
    np.testing.assert_allclose(got, _ref_ls_gnmax(list(map(float, votes)), 50, sigma, order), rtol=1e-7, atol=1e-12)
    assert np.all(got >= 0)
    got = ss.local_sensitivity_bounds_threshold(votes, 50, 30.0, sigma, order)
    np.testing.assert_allclose(got, _ref_ls_threshold(votes, 50, 30.0, sigma, order), rtol=1e-9, atol=1e-15)
    assert np.all(got >= 0)


def test_pinned_values():
    # computed with the transcription above
    assert ss.compute_logq0_gnmax(40.0, 16.0) == pytest.approx(-3.30369, abs=1e-5)
    ls = ss.local_sensitivity_bounds_gnmax([30, 12, 8, 0], 50, 5.0, 8.0)
    assert ls[0] == pytest.approx(_ref_ls_gnmax([30.0, 12.0, 8.0, 0.0], 50, 5.0, 8.0)[0])
    assert ss.rdp_smooth_sensitivity_gaussian(0.49 / 16, 10.0, 16.0) == pytest.approx(
        0.16 * math.exp(0.06125) + (0.49 - 0.5 * math.log(0.02)) / 15)
    assert ss.release_sigma(0.0, 2.0, 16.0) == pytest.approx(2.0)


@pytest.mark.parametrize("votes", VOTES)
def test_smooth_sensitivity_properties(votes):
    ls = ss.local_sensitivity_bounds_gnmax(votes, 50, 5.0, 8.0)
    betas = [0.0, 0.01, 0.05, 0.2, 1.0]
    smooth = [ss.smooth_sensitivity(ls, beta) for beta in betas]
    assert smooth[0] == pytest.approx(ls.max())
    assert all(value >= ls[0] >= 0 for value in smooth)  # SS >= LS at distance 0
    assert all(a >= b for a, b in zip(smooth, smooth[1:]))  # less smoothing, more sensitivity


def test_release_bounds_and_determinism():
    rng = np.random.default_rng(0)
    votes = np.array([rng.multinomial(50, rng.dirichlet(np.full(4, 0.3))) for _ in range(30)])
    for mechanism, parameters in [
        ("gnmax", {"sigma": 5.0}),
        ("confident_gnmax", {"threshold": 30.0, "sigma1": 10.0, "sigma2": 5.0, "answered": votes.max(axis=1) >= 30}),
    ]:
        result = release.release_data_dependent_epsilon(votes, mechanism=mechanism, delta=1e-5, **parameters)
        plain = RDPAccountant()  # the plain data-dependent epsilon
        plain.step(mechanism=mechanism, votes=votes, **parameters)
        report = plain.get_epsilon(1e-5)
        assert result.order == report["order_data_dependent"] and result.beta == pytest.approx(0.49 / result.order)
        assert result.rdp_data_dependent == pytest.approx(plain.rdp_data_dependent[list(plain.orders).index(result.order)])
        assert result.epsilon >= report["epsilon_data_dependent"] and result.rdp_release > 0
        assert result.smooth_sensitivity > 0 and result.noise_std == pytest.approx(result.smooth_sensitivity * result.sigma_ss)
        draws = [result.draw(np.random.default_rng(7)) for _ in range(2)]
        assert draws[0] == draws[1] and draws[0] != result.epsilon


def test_release_of_a_constant_costs_nothing():
    # sigma so large that even unanimous votes get the data-independent cost: the RDP is the same everywhere
    result = release.release_data_dependent_epsilon([[50, 0]] * 3, mechanism="gnmax", sigma=1e4, delta=1e-5, order=2.0)
    assert result.smooth_sensitivity == 0 and result.sigma_ss is None and result.rdp_release == 0
    assert result.draw(np.random.default_rng(0)) == result.epsilon


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ss.compute_logq0_gnmax(0.0, 2.0), "sigma"),
        (lambda: ss.compute_logq0_gnmax(1.0, 1.0), "order"),
        (lambda: ss.local_sensitivity_gnmax([0.5], 1.0, 3, 2.0), "logq"),
        (lambda: ss.local_sensitivity_gnmax([-1.0], 1.0, 1, 2.0), "num_classes"),
        (lambda: ss.local_sensitivity_bounds_gnmax([5, 5], 0, 1.0, 2.0), "num_teachers"),
        (lambda: ss.local_sensitivity_bounds_threshold([5, 5], 10, 11.0, 1.0, 2.0), "threshold"),
        (lambda: ss.local_sensitivity_bounds_threshold([20, 5], 10, 5.0, 1.0, 2.0), "max vote"),
        (lambda: ss.smooth_sensitivity([1.0, -1.0], 0.1), "local_sensitivities"),
        (lambda: ss.smooth_sensitivity([1.0], -0.1), "beta"),
        (lambda: ss.rdp_smooth_sensitivity_gaussian(0.1, 1.0, 6.0), "1 / \\(2 beta\\)"),
        (lambda: ss.release_sigma(0.1, 0.0, 2.0), "smooth sensitivity"),
        (lambda: release.release_data_dependent_epsilon([[5, 5]], mechanism="lnmax", delta=1e-5), "covers"),
        (lambda: release.release_data_dependent_epsilon([[5, 5], [4, 5]], mechanism="gnmax", sigma=1.0, delta=1e-5),
         "same whole number"),
        (lambda: release.release_data_dependent_epsilon([[5, 5]], mechanism="gnmax", sigma=1.0, delta=1e-5, order=2.0,
                                                        beta=0.3), "beta"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
