import json
import math

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant

from pate_lightning.privacy import PrivacyLedger, analysis, contract_entry, end_to_end_privacy
from pate_lightning.privacy.ledger import align, entry_from_contract

ORDERS = np.array(analysis.DEFAULT_ORDERS)


def _reference_rdp(*events) -> RdpAccountant:
    reference = RdpAccountant(orders=list(ORDERS))
    for event in events:
        reference.compose(event)
    return reference


def _dp_sgd_curve(noise_multiplier: float, sampling: float, steps: int) -> np.ndarray:
    """A DP-SGD generator's curve as the generator stage computes it (dp-accounting), for one teacher."""
    return _reference_rdp(dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(sampling, dp_event.GaussianDpEvent(noise_multiplier)), steps)).rdp


def test_gaussian_subsampled_gaussian_and_gnmax_compose_like_dp_accounting():
    gaussian = _reference_rdp(dp_event.GaussianDpEvent(3.0)).rdp  # e.g. a DP histogram of the shard
    subsampled = _dp_sgd_curve(1.1, 0.02, 500)
    ledger = PrivacyLedger()
    ledger.step(stage="generator", name="class_histogram", rdp=gaussian)
    # the generator's entry travels through the privacy contract as JSON
    record = json.loads(json.dumps(contract_entry(stage="generator", name="dp_vae", reads_private_data=True, dp=True,
                                                  rdp=subsampled)))
    ledger.add_contract([record])
    ledger.step(stage="pate", name="gnmax(sigma=40)", rdp=600 * analysis.rdp_gnmax_data_independent(40.0, ORDERS))
    reference = _reference_rdp(
        dp_event.GaussianDpEvent(3.0),
        dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(0.02, dp_event.GaussianDpEvent(1.1)), 500),
        dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(40.0 / math.sqrt(2)), 600),  # sensitivity sqrt(2)
    )
    np.testing.assert_allclose(ledger.rdp, reference.rdp, rtol=1e-9, atol=0)
    epsilon, order = reference.get_epsilon_and_optimal_order(1e-5)
    result = ledger.get_epsilon(1e-5)
    assert result["epsilon"] == pytest.approx(epsilon, rel=1e-9) and result["order"] == order
    assert result["conversion"] == "balle2020" and result["unbounded_by"] == []
    assert ledger.get_epsilon(1e-5, conversion="classic")["epsilon"] > result["epsilon"]


def test_parallel_composition_over_teachers_is_the_max():
    curves = np.stack([_dp_sgd_curve(sigma, 0.05, 200) for sigma in (0.9, 1.2, 2.0)])  # (teachers, orders)
    ledger = PrivacyLedger()
    ledger.step(stage="generator", name="dp_vae", rdp=curves)
    np.testing.assert_array_equal(ledger.rdp, curves.max(axis=0))
    np.testing.assert_array_equal(ledger.rdp, curves[0])  # the least noisy teacher dominates at every order
    # and the max is less than their sum: a record lives in one shard
    assert np.all(ledger.rdp < curves.sum(axis=0))


def test_a_stage_without_dp_leaves_the_total_unbounded_and_says_which():
    ledger = PrivacyLedger()
    ledger.add_contract([
        {"stage": "generator", "name": "public", "reads_private_data": False, "dp": False, "rdp": None, "note": ""},
        {"stage": "selection", "name": "nn_distance", "reads_private_data": True, "dp": False, "rdp": None},
    ])
    ledger.step(stage="pate", name="gnmax", rdp=analysis.rdp_gnmax_data_independent(40.0, ORDERS))
    result = ledger.get_epsilon(1e-5)
    assert result["epsilon"] is None and result["unbounded_by"] == ["selection:nn_distance"]
    np.testing.assert_array_equal(ledger.rdp, analysis.rdp_gnmax_data_independent(40.0, ORDERS))


def test_curves_on_other_orders_are_unbounded_where_missing():
    np.testing.assert_array_equal(align([2.0, 8.0], [0.1, 0.4], [2.0, 4.0, 8.0]), [0.1, math.inf, 0.4])
    ledger = PrivacyLedger(orders=[2.0, 4.0, 8.0])
    ledger.step(stage="generator", name="dp_vae", rdp=[0.1, 0.4], orders=[2.0, 8.0])
    ledger.step(stage="pate", name="gnmax", rdp=[0.01, 0.02, 0.04])
    assert ledger.get_epsilon(1e-5)["order"] in (2.0, 8.0)


def test_state_dict_round_trips_through_json_with_infinite_orders():
    ledger = PrivacyLedger(orders=[2.0, 4.0, 30.0])
    ledger.step(stage="pate", name="release", rdp=[0.1, 0.2, math.inf])
    ledger.step(stage="selection", name="histogram", dp=False)
    resumed = PrivacyLedger(orders=[2.0, 4.0, 30.0])
    resumed.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    np.testing.assert_array_equal(resumed.rdp, ledger.rdp)
    assert resumed.unbounded_by == ["selection:histogram"]
    with pytest.raises(ValueError, match="other orders"):
        PrivacyLedger(orders=[2.0, 3.0, 30.0]).load_state_dict(ledger.state_dict())


def _pate_steps():
    return [{"stage": "pate", "name": "gnmax(sigma=40)", "rdp": 600 * analysis.rdp_gnmax_data_independent(40.0, ORDERS)}]


def test_end_to_end_scope_and_epsilon_from_the_contract():
    public = end_to_end_privacy("mnist_test", None, _pate_steps(), 1e-5)
    assert public["privacy_scope"] == "labels" and public["epsilon_end_to_end"] == public["epsilon_labels"]

    unrecorded = end_to_end_privacy("synthetic", None, _pate_steps(), 1e-5)
    assert unrecorded["privacy_scope"] == "labels_only_queries_not_private"
    assert unrecorded["epsilon_end_to_end"] is None and unrecorded["unbounded_by"] == ["synthetic:unrecorded"]
    assert unrecorded["epsilon_labels"] == public["epsilon_labels"]

    leaking = [contract_entry(stage="generator", name="per_teacher", reads_private_data=True, dp=False),
               contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False)]
    result = end_to_end_privacy("synthetic", leaking, _pate_steps(), 1e-5)
    assert result["privacy_scope"] == "labels_only_queries_not_private" and "generator:per_teacher" in result["scope_note"]

    dp_vae = _dp_sgd_curve(1.1, 0.02, 500)
    private = [contract_entry(stage="generator", name="per_teacher", reads_private_data=True, dp=True, rdp=dp_vae),
               contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False)]
    result = end_to_end_privacy("synthetic", private, _pate_steps(), 1e-5)
    assert result["privacy_scope"] == "end_to_end"
    expected = analysis.rdp_to_dp(ORDERS, dp_vae + _pate_steps()[0]["rdp"], 1e-5)[0]
    assert result["epsilon_end_to_end"] == pytest.approx(expected, rel=1e-12)
    assert result["epsilon_end_to_end"] > result["epsilon_labels"]


@pytest.mark.parametrize(
    "record, message",
    [
        ("generator", "JSON object"),
        ({"stage": "generator", "name": "x", "dp": True}, "lacks"),
        ({"stage": "generator", "name": "x", "reads_private_data": "yes", "dp": True}, "true/false"),
        ({"stage": "generator", "name": "x", "reads_private_data": True, "dp": True, "rdp": None}, "no rdp"),
        ({"stage": "generator", "name": "x", "reads_private_data": True, "dp": True,
          "rdp": {"orders": [2.0], "values": [-1.0]}}, "value >= 0"),
    ],
)
def test_bad_contract_entries_raise(record, message):
    with pytest.raises(ValueError, match=message):
        entry_from_contract(record)


def test_a_declared_look_at_private_data_blocks_the_end_to_end_scope():
    from pate_lightning.privacy.scope import decide_scope, end_to_end_privacy

    public = [{"stage": "generator", "name": "public", "reads_private_data": False, "dp": False}]
    assert decide_scope("synthetic", public)[0] == "end_to_end"
    scope, note = decide_scope("synthetic", public, "prior epochs chosen on the teachers' agreement")
    assert scope == "end_to_end_settings_tuned_on_private_data" and "teachers' agreement" in note
    steps = [{"stage": "pate", "name": "gnmax", "rdp": [0.1, 0.2]}]
    result = end_to_end_privacy("synthetic", public, steps, 1e-5, orders=[2, 3],
                                settings_chosen_on_private_data="prior epochs")
    assert result["privacy_scope"] != "end_to_end" and result["settings_chosen_on_private_data"] == "prior epochs"
