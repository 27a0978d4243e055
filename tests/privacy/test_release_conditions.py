import numpy as np
import pytest
import torch

from pate_lightning.pate.aggregate import Mechanism, account
from pate_lightning.privacy import ReleaseSettings, fixed_release
from pate_lightning.privacy.release_conditions import gnmax_conditions_failure, release_refusal


AT_16 = ReleaseSettings(order=16.0)  # the audit's counterexamples are at order 16


def _votes(num_teachers: int = 250, queries: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([rng.multinomial(num_teachers, rng.dirichlet(np.full(10, 0.3))) for _ in range(queries)])


@pytest.mark.parametrize("sigma, holds", [(1.0, False), (3.0, False), (10.0, False), (40.0, True)])
def test_conditions_c5_c6_at_order_16_with_10_classes(sigma, holds):
    failure = gnmax_conditions_failure(sigma, 10, 16.0)
    assert (failure is None) == holds
    if not holds:  # the audit's counterexamples are C6 failures
        assert failure.startswith("C6 fails") and f"sigma {sigma:g}" in failure


@pytest.mark.parametrize("sigma", [1.0, 3.0, 10.0])
def test_a_release_where_the_conditions_fail_is_refused(sigma):
    with pytest.raises(ValueError, match=r"Theorem 23\) is not valid here: C6 fails"):
        fixed_release(_votes(), mechanism="gnmax", sigma=sigma, delta=1e-5, settings=AT_16)
    with pytest.raises(ValueError, match="C6 fails"):
        fixed_release(_votes(), mechanism="confident_gnmax", threshold=150.0, sigma1=100.0, sigma2=sigma,
                      answered=np.ones(20, dtype=bool), delta=1e-5, settings=AT_16)


def test_a_release_where_the_conditions_hold_is_made():
    release = fixed_release(_votes(), mechanism="gnmax", sigma=40.0, delta=1e-5, settings=AT_16)
    assert release.parameters_fixed and release.order == 16.0 and release.noise_std >= 0


@pytest.mark.parametrize("sigma, released", [(3.0, False), (10.0, False), (40.0, True)])
def test_account_publishes_the_data_independent_epsilon_only_where_the_conditions_fail(sigma, released):
    votes = torch.as_tensor(_votes())
    answered = torch.ones(len(votes), dtype=torch.bool)
    accounting = account(votes, answered, Mechanism("gnmax", sigma=sigma), 1e-5, np.random.default_rng(1),
                         AT_16)
    public = accounting.public
    assert public["data_dependent_released"] is released and (public["release"] is not None) is released
    assert [step["name"] for step in accounting.ledger_steps][1:] == (["smooth_sensitivity_release"] if released else [])
    if released:
        assert public["release_refused"] is None and isinstance(public["epsilon_data_dependent_released"], float)
    else:
        assert public["epsilon_data_dependent_released"] is None and "C6 fails" in public["release_refused"]
        assert "not released" in public["note"] and accounting.diagnostics["release_fixed"] is None
        assert public["epsilon_data_independent"] > 0


def test_a_constant_gnmax_term_needs_no_conditions():
    # three teachers at sigma 10: even unanimous votes pay the data-independent cost, so nothing is data-dependent
    assert gnmax_conditions_failure(10.0, 10, 16.0) is not None
    assert release_refusal("gnmax", {"sigma": 10.0}, 10, 3, 16.0) is None
