import json
import math

import numpy as np
import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant

from pate_lightning.privacy import RDPAccountant, analysis

ORDERS = np.array(analysis.DEFAULT_ORDERS)


def _votes(num_queries: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.multinomial(250, rng.dirichlet(np.full(10, 0.1))) for _ in range(num_queries)])  # (Q, C)


def test_gnmax_without_votes_is_data_independent():
    accountant = RDPAccountant()
    accountant.step(mechanism="gnmax", sigma=40.0, num_queries=286)
    np.testing.assert_allclose(accountant.rdp_data_independent, 286 * ORDERS / 1600)
    np.testing.assert_array_equal(accountant.rdp_data_dependent, accountant.rdp_data_independent)
    report = accountant.get_epsilon(1e-5)
    assert report["epsilon_data_independent"] == report["epsilon_data_dependent"]
    assert report["num_queries"] == report["num_answered"] == 286


def test_matches_dp_accounting_over_several_steps():
    accountant, reference = RDPAccountant(), RdpAccountant(orders=list(ORDERS))
    for sigma, count in [(40.0, 100), (20.0, 50), (40.0, 136)]:
        accountant.step(mechanism="gnmax", sigma=sigma, num_queries=count)
        reference.compose(dp_event.GaussianDpEvent(sigma / math.sqrt(2)), count)
    np.testing.assert_allclose(accountant.rdp_data_independent, reference.rdp, rtol=1e-9)
    report = accountant.get_epsilon(1e-5, conversion="balle2020")
    assert report["epsilon_data_independent"] == pytest.approx(reference.get_epsilon(1e-5), rel=1e-6)


def test_votes_give_the_sum_of_per_query_bounds():
    votes = _votes(20)
    accountant = RDPAccountant()
    accountant.step(mechanism="gnmax", sigma=40.0, votes=torch.as_tensor(votes))
    logqs = [analysis.compute_logq_gnmax(row, 40.0) for row in votes]
    expected = sum(analysis.rdp_gnmax_data_dependent(logq, 40.0, ORDERS) for logq in logqs)
    np.testing.assert_allclose(accountant.rdp_data_dependent, expected)
    assert np.all(accountant.rdp_data_dependent <= accountant.rdp_data_independent)


def test_confident_gnmax_a_priori_charges_every_asked_query():
    votes = _votes(30, seed=1)
    answered = votes.max(axis=1) >= 200
    accountant = RDPAccountant()
    accountant.step(
        mechanism="confident_gnmax", threshold=200.0, sigma1=150.0, sigma2=40.0, answered=answered, votes=votes
    )
    assert 0 < answered.sum() < 30
    # a priori (the headline): the threshold check and GNMax(sigma2) on every asked query
    np.testing.assert_allclose(accountant.rdp_data_independent, 30 * ORDERS / (2 * 150.0**2) + 30 * ORDERS / 40.0**2)
    # the realised count, reported beside it: GNMax only on the answered ones
    realised = 30 * ORDERS / (2 * 150.0**2) + answered.sum() * ORDERS / 40.0**2
    np.testing.assert_allclose(accountant.rdp_data_independent_answered, realised)
    assert np.all(accountant.rdp_data_dependent <= realised)
    report = accountant.get_epsilon(1e-5)
    assert report["num_queries"] == 30 and report["num_answered"] == int(answered.sum())
    assert report["epsilon_data_dependent"] < report["epsilon_data_independent_answered_only"] < report["epsilon_data_independent"]
    again = RDPAccountant()
    again.load_state_dict(json.loads(json.dumps(accountant.state_dict())))
    np.testing.assert_array_equal(again.rdp_data_independent_answered, accountant.rdp_data_independent_answered)


def test_lnmax_and_report_flags():
    accountant = RDPAccountant(orders=[2, 11, 101])
    accountant.step(mechanism="lnmax", gamma=0.05, votes=_votes(10))
    np.testing.assert_allclose(accountant.rdp_data_independent, 10 * np.minimum(0.1, np.array([2, 11, 101]) * 0.005))
    report = accountant.get_epsilon(1e-5)
    assert report["data_dependent_released"] is False
    assert "not itself privately released" in report["note"]
    for side in ("data_independent", "data_dependent"):
        assert report[f"epsilon_{side}"] > 0 and report[f"order_{side}"] in (2, 11, 101)


def test_epsilon_grows_with_queries():
    accountant, epsilons = RDPAccountant(), []
    for _ in range(4):
        accountant.step(mechanism="gnmax", sigma=40.0, votes=_votes(25))
        report = accountant.get_epsilon(1e-5)
        epsilons.append((report["epsilon_data_independent"], report["epsilon_data_dependent"]))
    assert np.all(np.diff(np.array(epsilons), axis=0) > 0)


def test_state_dict_round_trip_through_json():
    whole, first = RDPAccountant(), RDPAccountant()
    votes = _votes(40, seed=2)
    whole.step(mechanism="gnmax", sigma=40.0, votes=votes)
    first.step(mechanism="gnmax", sigma=40.0, votes=votes[:25])
    resumed = RDPAccountant()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    resumed.step(mechanism="gnmax", sigma=40.0, votes=votes[25:])
    np.testing.assert_allclose(resumed.rdp_data_dependent, whole.rdp_data_dependent)
    np.testing.assert_allclose(resumed.rdp_data_independent, whole.rdp_data_independent)
    assert resumed.get_epsilon(1e-5) == pytest.approx(whole.get_epsilon(1e-5))
    with pytest.raises(ValueError, match="other orders"):
        RDPAccountant(orders=[2, 3]).load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match="keys"):
        RDPAccountant().load_state_dict({"orders": list(ORDERS)})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mechanism="rnm", sigma=1.0, num_queries=1), "lnmax"),
        (dict(mechanism="gnmax", num_queries=1), "missing"),
        (dict(mechanism="gnmax", sigma=1.0, gamma=0.1, num_queries=1), "unexpected"),
        (dict(mechanism="confident_gnmax", threshold=200.0, sigma1=150.0, sigma2=40.0, num_queries=1), "answered"),
        (dict(mechanism="gnmax", sigma=1.0, answered=[True]), "answered"),
        (dict(mechanism="gnmax", sigma=1.0), "num_queries"),
        (dict(mechanism="gnmax", sigma=1.0, num_queries=3, votes=[[1, 2]]), "disagrees"),
        (dict(mechanism="gnmax", sigma=1.0, votes=[1, 2]), "shape"),
        (dict(mechanism="gnmax", sigma=-1.0, num_queries=1), "sigma"),
        (dict(mechanism="gnmax", sigma=1.0, num_queries=-1), "num_queries"),
        (dict(mechanism="gnmax", sigma=1.0, votes=[[3, -1]]), "non-negative"),
        (dict(mechanism="confident_gnmax", threshold=-5.0, sigma1=1.0, sigma2=1.0, answered=[True]), "threshold"),
        (dict(mechanism="confident_gnmax", threshold=9, sigma1=1, sigma2=1, answered=[1], votes=[[3, 2]]), "threshold"),
    ],
)
def test_bad_steps_raise(kwargs, message):
    accountant = RDPAccountant()
    with pytest.raises(ValueError, match=message):
        accountant.step(**kwargs)
    assert accountant.num_queries == 0 and not accountant.rdp_data_independent.any()


def test_bad_delta_raises():
    with pytest.raises(ValueError, match="delta"):
        RDPAccountant().get_epsilon(0.0)
    with pytest.raises(ValueError, match="orders"):
        RDPAccountant(orders=[0.5, 2])
