"""The default release order: a pure function of settings, fixed before any vote is read."""

import numpy as np
import pytest
import torch

from pate_lightning.pate.aggregate import Mechanism, account
from pate_lightning.privacy import DEFAULT_ORDERS, ReleaseSettings, analysis, fixed_release
from pate_lightning.privacy import smooth_sensitivity as ss
from pate_lightning.privacy.release_conditions import gnmax_conditions_failure
from pate_lightning.privacy.release_order import default_release_order, unanimous_rdp

CGN = {"threshold": 200.0, "sigma1": 150.0, "sigma2": 40.0}


def _votes(seed: int, concentration: float, queries: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([rng.multinomial(250, rng.dirichlet(np.full(10, concentration))) for _ in range(queries)])


def _objective(order: float, num_queries: int) -> float:
    """The rule's objective, written out: the released epsilon at unanimous votes on every query."""
    settings = ReleaseSettings(order=order).resolved()
    rdp = (num_queries * unanimous_rdp("confident_gnmax", CGN, 10, 250, order)
           + ss.rdp_smooth_sensitivity_gaussian(settings.beta, settings.sigma_ss, order))
    return analysis.rdp_to_dp([order], [rdp], 1e-5, "balle2020")[0]


@pytest.mark.parametrize("asked", [500, 800, 2600])  # the README's public-prior and papers' rows
def test_the_rule_minimises_its_objective_over_the_valid_orders(asked):
    order = default_release_order("confident_gnmax", CGN, asked, 10, 250, 1e-5)
    assert gnmax_conditions_failure(CGN["sigma2"], 10, order) is None  # the release is valid there
    valid = [o for o in DEFAULT_ORDERS if o > 1 and gnmax_conditions_failure(CGN["sigma2"], 10, o) is None]
    assert _objective(order, asked) == pytest.approx(min(_objective(o, asked) for o in valid))
    assert default_release_order("confident_gnmax", CGN, asked, 10, 250, 1e-5) == order  # same settings, same order


def test_the_order_follows_the_settings():
    # more queries asked make the data-dependent RDP grow with the order, so the rule picks a lower one
    orders = [default_release_order("confident_gnmax", CGN, asked, 10, 250, 1e-5) for asked in (100, 500, 2600, 5000)]
    assert orders == sorted(orders, reverse=True) and len(set(orders)) == 4
    # an explicit order overrides the rule
    assert fixed_release(_votes(0, 0.3), mechanism="gnmax", sigma=40.0, delta=1e-5,
                         settings=ReleaseSettings(order=12.0)).order == 12.0


def test_the_order_does_not_move_when_the_votes_do():
    orders = set()
    for seed, concentration in [(0, 0.05), (1, 0.3), (2, 3.0)]:  # confident to split ensembles
        votes = torch.as_tensor(_votes(seed, concentration))
        answered = votes.max(dim=1).values >= 200
        accounting = account(votes, answered, Mechanism(), 1e-5, np.random.default_rng(0))
        orders.add(accounting.public["release"]["order"])
    assert orders == {default_release_order("confident_gnmax", CGN, 30, 10, 250, 1e-5)}


def test_where_order_16_fails_the_conditions_the_rule_finds_a_valid_order():
    # sigma 10 with 10 classes: C6 fails at order 16 (the old constant), so that release was refused
    assert gnmax_conditions_failure(10.0, 10, 16.0) is not None
    votes = torch.as_tensor(_votes(0, 0.3))
    accounting = account(votes, torch.ones(len(votes), dtype=torch.bool), Mechanism("gnmax", sigma=10.0), 1e-5,
                         np.random.default_rng(0))
    order = accounting.public["release"]["order"]
    assert accounting.public["release_refused"] is None and gnmax_conditions_failure(10.0, 10, order) is None
