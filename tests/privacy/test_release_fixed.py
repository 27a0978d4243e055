import math

import numpy as np
import pytest

from pate_lightning.privacy import ReleaseSettings, fixed_release, release_data_dependent_epsilon, release_rdp_curve
from pate_lightning.privacy import smooth_sensitivity as ss
from pate_lightning.privacy.release_settings import balanced_sigma

CGN = {"threshold": 150.0, "sigma1": 50.0, "sigma2": 20.0}  # sigma2 20: conditions C5/C6 hold at order 16


def _votes(seed: int, concentration: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([rng.multinomial(250, rng.dirichlet(np.full(4, concentration))) for _ in range(30)])  # (Q, C)


@pytest.mark.parametrize("mechanism", ["gnmax", "confident_gnmax"])
def test_changing_the_votes_does_not_move_sigma_ss(mechanism):
    releases, chosen = [], []
    for seed, concentration in [(0, 0.1), (1, 0.3), (2, 3.0)]:  # confident to split ensembles
        votes = _votes(seed, concentration)
        parameters = {"sigma": 20.0} if mechanism == "gnmax" else {**CGN, "answered": votes.max(axis=1) >= 150}
        releases.append(fixed_release(votes, mechanism=mechanism, delta=1e-5, **parameters))
        chosen.append(release_data_dependent_epsilon(votes, mechanism=mechanism, delta=1e-5, **parameters))
    public = [release.public() for release in releases]
    assert all(p == public[0] for p in public)  # order, beta, sigma_ss and the release's cost: fixed in advance
    order = public[0]["order"]  # the rule's, from the settings: the same whatever the votes
    assert public[0]["sigma_ss"] == pytest.approx(balanced_sigma(order, 0.49 / order))
    # the votes move the released value and its noise std, never the noise multiplier
    assert len({release.rdp_data_dependent for release in releases}) == 3
    assert len({release.noise_std for release in releases}) == 3
    # the reference's data-chosen variant: sigma_ss (and the order) follow the votes
    assert len({release.sigma_ss for release in chosen}) == 3 and not chosen[0].parameters_fixed
    with pytest.raises(ValueError, match="diagnostic"):
        chosen[0].public()


def test_release_cost_is_theorem_23_at_the_fixed_parameters():
    settings = ReleaseSettings(order=10.0, beta=0.04, sigma_ss=8.0)
    release = fixed_release(_votes(0, 0.1), mechanism="gnmax", sigma=20.0, delta=1e-5, settings=settings)
    assert release.rdp_release == ss.rdp_smooth_sensitivity_gaussian(0.04, 8.0, 10.0)
    curve = release_rdp_curve(0.04, 8.0, [2.0, 10.0, 12.4, 12.5, 20.0])  # defined below 1 / (2 beta) = 12.5
    assert curve[1] == release.rdp_release and np.all(np.isfinite(curve[:3])) and np.all(np.isinf(curve[3:]))
    # the two terms of Theorem 23 are equal at the default rule's sigma_ss
    order, beta = 16.0, 0.49 / 16
    sigma = balanced_sigma(order, beta)
    second = (beta * order - 0.5 * math.log1p(-2 * order * beta)) / (order - 1)
    assert order * math.exp(2 * beta) / sigma**2 == pytest.approx(second, rel=1e-12)


def test_one_draw_per_generator_and_a_valid_epsilon():
    release = fixed_release(_votes(1, 0.3), mechanism="gnmax", sigma=20.0, delta=1e-5)
    draws = [release.draw(np.random.default_rng(seed)) for seed in (7, 7, 8)]
    assert draws[0] == draws[1] != draws[2] and all(d >= 0 for d in draws)


@pytest.mark.parametrize(
    "settings, message",
    [
        (ReleaseSettings(order=1.0), "release.order"),
        (ReleaseSettings(order=16.0, beta=0.04), "release.beta"),
        (ReleaseSettings(sigma_ss=0.0), "release.sigma_ss"),
        (ReleaseSettings(sigma_ss=math.inf), "release.sigma_ss"),
    ],
)
def test_bad_release_settings_raise(settings, message):
    with pytest.raises(ValueError, match=message):
        settings.resolved()
