import math

import numpy as np
import pytest
import scipy.stats
from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant

from pate_lightning.privacy import analysis

ORDERS = np.array(analysis.DEFAULT_ORDERS)
SIGMAS = [0.5, 1.0, 5.0, 40.0, 100.0, 200.0]


def _extreme_histograms(num_teachers: int = 250, num_classes: int = 10) -> list[np.ndarray]:
    unanimous = np.eye(num_classes)[0] * num_teachers
    two_way_tie = np.zeros(num_classes)
    two_way_tie[:2] = num_teachers / 2
    near_tie = two_way_tie + np.eye(num_classes)[0] - np.eye(num_classes)[1]
    spread = np.full(num_classes, num_teachers / num_classes)
    return [unanimous, two_way_tie, near_tie, spread, np.zeros(num_classes)]


def _random_histograms(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.multinomial(250, rng.dirichlet(np.full(10, rng.choice([0.05, 0.3, 2.0])))) for _ in range(count)]


# Closed forms.


def test_data_independent_closed_forms():
    np.testing.assert_allclose(analysis.rdp_gnmax_data_independent(40.0, ORDERS), ORDERS / 1600)
    np.testing.assert_allclose(analysis.rdp_threshold_data_independent(150.0, ORDERS), ORDERS / (2 * 150.0**2))
    gamma = 0.05  # eps = 0.1; lambda * eps^2 / 2 meets eps at lambda = 20
    np.testing.assert_allclose(analysis.rdp_lnmax_data_independent(gamma, ORDERS), np.minimum(0.1, ORDERS * 0.005))


def test_logq_closed_forms():
    assert analysis.compute_logq_gnmax([30, 0], 10.0) == pytest.approx(scipy.stats.norm.logsf(30 / (10 * math.sqrt(2))))
    assert analysis.compute_logq_gnmax([7, 7, 7], 3.0) == pytest.approx(math.log(2 / 3))  # capped at 1 - 1/classes
    assert analysis.compute_logq_lnmax([30, 0], 0.5) == pytest.approx(math.log((2 + 15) / (4 * math.exp(15))))
    assert analysis.compute_logpr_answered(200, 50.0, [245, 5]) == pytest.approx(scipy.stats.norm.logsf(-45 / 50))


def test_data_dependent_matches_reference_values():
    # Values printed by tensorflow/privacy research/pate_2018/core.py (rdp_gaussian, rdp_pure_eps).
    orders = [2.0, 8.0, 32.0, 64.0]
    expected = [1.5553937418354819e-05, 2.0959794719110172e-05, 2.0644217781280792e-04, 1.1010210108790766e-02]
    np.testing.assert_allclose(analysis.rdp_gnmax_data_dependent(-10.0, 40.0, orders), expected, rtol=1e-9)
    expected = [0.00337393678598838, 0.00530246547657381, 0.06905161374448314, 0.16]
    np.testing.assert_allclose(analysis.rdp_gnmax_data_dependent(-5.0, 20.0, orders), expected, rtol=1e-9)
    logq = analysis.compute_logq_lnmax([30, 0, 0], 0.5)
    expected = [8.935628814975399e-06, 4.108525619785033e-04, 5.851634250560485e-01, 7.958740660872424e-01]
    np.testing.assert_allclose(analysis.rdp_lnmax_data_dependent(logq, 0.5, orders), expected, rtol=1e-9)


def test_standard_conversion_closed_form():
    # k Gaussian queries: eps(lambda) = k lambda / sigma^2 + L / (lambda - 1) is minimised at
    # lambda* = 1 + sigma sqrt(L / k), where eps = k / sigma^2 + 2 sqrt(k L) / sigma.
    sigma, k, log_inv_delta = 40.0, 100, math.log(1e5)
    best = 1 + sigma * math.sqrt(log_inv_delta / k)
    orders = np.array([best - 1, best - 0.5, best, best + 0.5, best + 1])
    eps, order = analysis.rdp_to_dp(orders, k * analysis.rdp_gnmax_data_independent(sigma, orders), 1e-5, "classic")
    assert order == pytest.approx(best)
    assert eps == pytest.approx(k / sigma**2 + 2 * math.sqrt(k * log_inv_delta) / sigma, rel=1e-12)


# Agreement with dp_accounting.


@pytest.mark.parametrize("sigma, count", [(1.0, 1), (5.0, 10), (40.0, 286), (150.0, 1000)])
def test_gnmax_agrees_with_dp_accounting(sigma, count):
    # GNMax on a histogram of L2 sensitivity sqrt(2) is a Gaussian mechanism with noise multiplier sigma / sqrt(2).
    reference = RdpAccountant(orders=list(ORDERS))
    reference.compose(dp_event.GaussianDpEvent(sigma / math.sqrt(2)), count)
    ours = count * analysis.rdp_gnmax_data_independent(sigma, ORDERS)
    np.testing.assert_allclose(ours, reference.rdp, rtol=1e-9)
    eps, order = analysis.rdp_to_dp(ORDERS, ours, 1e-5, conversion="balle2020")
    reference_eps, reference_order = reference.get_epsilon_and_optimal_order(1e-5)
    assert eps == pytest.approx(reference_eps, rel=1e-6) and order == reference_order
    # The classic conversion is looser than dp_accounting's.
    assert analysis.rdp_to_dp(ORDERS, ours, 1e-5, conversion="classic")[0] >= reference_eps


def test_threshold_agrees_with_dp_accounting():
    reference = RdpAccountant(orders=list(ORDERS))
    reference.compose(dp_event.GaussianDpEvent(150.0), 500)  # max vote has sensitivity 1
    np.testing.assert_allclose(500 * analysis.rdp_threshold_data_independent(150.0, ORDERS), reference.rdp, rtol=1e-9)


def test_lnmax_is_a_valid_bound_against_dp_accounting():
    gamma = 0.05
    ours = analysis.rdp_lnmax_data_independent(gamma, ORDERS)
    exact = RdpAccountant(orders=list(ORDERS))  # two counts move by 1, each with Laplace(1 / gamma) noise
    exact.compose(dp_event.LaplaceDpEvent(1 / gamma), 2)
    assert np.all(ours >= exact.rdp - 1e-12)
    zcdp = RdpAccountant(orders=list(ORDERS))  # eps-DP implies (eps^2 / 2)-zCDP
    zcdp.compose(dp_event.ZCDpEvent(rho=(2 * gamma) ** 2 / 2))
    small = ORDERS <= 20
    np.testing.assert_allclose(ours[small], zcdp.rdp[small], rtol=1e-12)


# Monotonicity and data-dependent <= data-independent.


def test_epsilon_decreases_with_noise_and_grows_with_queries():
    # Only the data-independent epsilon must fall as sigma grows: more noise also blurs the consensus,
    # so the data-dependent one may rise (here it does, from 0.30 at sigma=10 to 0.86 at sigma=80).
    curves = [100 * analysis.rdp_gnmax_data_independent(sigma, ORDERS) for sigma in SIGMAS]
    by_sigma = [analysis.rdp_to_dp(ORDERS, curve, 1e-5)[0] for curve in curves]
    assert np.all(np.diff(by_sigma) < 0)
    for votes in [[200, 30, 20], [125, 125, 0]]:
        logq = analysis.compute_logq_gnmax(votes, 40.0)
        per_query = analysis.rdp_gnmax_data_dependent(logq, 40.0, ORDERS)
        by_count = [analysis.rdp_to_dp(ORDERS, k * per_query, 1e-5)[0] for k in [1, 10, 100, 1000]]
        assert np.all(np.diff(by_count) > 0)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_data_dependent_never_exceeds_data_independent(sigma):
    independent = analysis.rdp_gnmax_data_independent(sigma, ORDERS)
    threshold_independent = analysis.rdp_threshold_data_independent(sigma, ORDERS)
    lnmax_independent = analysis.rdp_lnmax_data_independent(1 / sigma, ORDERS)
    for votes in _extreme_histograms() + _random_histograms(40):
        gnmax = analysis.rdp_gnmax_data_dependent(analysis.compute_logq_gnmax(votes, sigma), sigma, ORDERS)
        assert np.all(gnmax >= 0) and np.all(gnmax <= independent)
        for threshold in [0.0, votes.sum() / 2, votes.sum()]:
            logpr = analysis.compute_logpr_answered(threshold, sigma, votes)
            check = analysis.rdp_threshold_data_dependent(logpr, sigma, ORDERS)
            assert np.all(check >= 0) and np.all(check <= threshold_independent)
        laplace = analysis.rdp_lnmax_data_dependent(analysis.compute_logq_lnmax(votes, 1 / sigma), 1 / sigma, ORDERS)
        assert np.all(laplace >= 0) and np.all(laplace <= lnmax_independent)
    for logq in [-math.inf, -1e4, -50.0, -1.0, -1e-12, 0.0]:
        assert np.all(analysis.rdp_gnmax_data_dependent(logq, sigma, ORDERS) <= independent)


def test_pate_2018_regime_strong_consensus():
    votes = [245, 1, 1, 1, 1, 1, 0, 0, 0, 0]  # 250 teachers, sigma = 40 (Papernot et al. 2018, MNIST)
    logq = analysis.compute_logq_gnmax(votes, 40.0)
    dependent = analysis.rdp_gnmax_data_dependent(logq, 40.0, ORDERS)
    independent = analysis.rdp_gnmax_data_independent(40.0, ORDERS)
    at_20 = ORDERS == 20
    assert dependent[at_20] < independent[at_20] / 100
    eps_dependent = analysis.rdp_to_dp(ORDERS, 1000 * dependent, 1e-5, "classic")[0]
    eps_independent = analysis.rdp_to_dp(ORDERS, 1000 * independent, 1e-5, "classic")[0]
    assert eps_dependent == pytest.approx(0.6038, abs=1e-4) and eps_independent == pytest.approx(6.0032, abs=1e-4)


# Validation.


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: analysis.rdp_gnmax_data_independent(0.0, [2]), "sigma"),
        (lambda: analysis.rdp_gnmax_data_independent(-1.0, [2]), "sigma"),
        (lambda: analysis.rdp_gnmax_data_independent(float("nan"), [2]), "sigma"),
        (lambda: analysis.rdp_lnmax_data_independent(0.0, [2]), "gamma"),
        (lambda: analysis.rdp_threshold_data_independent(-2.0, [2]), "sigma1"),
        (lambda: analysis.rdp_gnmax_data_independent(1.0, [1.0, 2.0]), "orders"),
        (lambda: analysis.rdp_gnmax_data_independent(1.0, []), "orders"),
        (lambda: analysis.rdp_gnmax_data_dependent(0.1, 1.0, [2]), "logq"),
        (lambda: analysis.rdp_gnmax_data_dependent(float("nan"), 1.0, [2]), "logq"),
        (lambda: analysis.compute_logq_gnmax([[1, 2], [3, 4]], 1.0), "1-D"),
        (lambda: analysis.compute_logq_gnmax([5], 1.0), "at least 2"),
        (lambda: analysis.compute_logq_lnmax([5, -1], 1.0), "non-negative"),
        (lambda: analysis.compute_logpr_answered(300.0, 1.0, [200, 50]), "threshold"),
        (lambda: analysis.compute_logpr_answered(-1.0, 1.0, [200, 50]), "threshold"),
        (lambda: analysis.rdp_to_dp([2, 3], [0.1, 0.2], 0.0), "delta"),
        (lambda: analysis.rdp_to_dp([2, 3], [0.1, 0.2], 1.0), "delta"),
        (lambda: analysis.rdp_to_dp([2, 3], [0.1], 1e-5), "one value per order"),
        (lambda: analysis.rdp_to_dp([2, 3], [0.1, -0.2], 1e-5), "non-negative"),
        (lambda: analysis.rdp_to_dp([2, 3], [0.1, 0.2], 1e-5, conversion="tight"), "balle2020"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("seed", range(5))
def test_balle2020_conversion_equals_dp_accounting_on_random_curves(seed):
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    rng = np.random.default_rng(seed)
    orders = np.sort(rng.uniform(1.001, 300, size=40))
    rdp = rng.exponential(scale=10.0 ** rng.uniform(-6, 1), size=40)  # tiny curves reach the KL case
    for delta in (1e-5, 1e-2):
        ours = analysis.rdp_to_dp(orders, rdp, delta)
        reference = compute_epsilon(list(orders), list(rdp), delta)
        assert ours[0] == pytest.approx(reference[0], rel=1e-12, abs=1e-15)
        assert ours[0] <= analysis.rdp_to_dp(orders, rdp, delta, "classic")[0]


def test_conversion_skips_infinite_orders():
    eps, order = analysis.rdp_to_dp([2.0, 8.0, 32.0], [0.01, 0.1, math.inf], 1e-5)
    assert math.isfinite(eps) and order == 8.0
