"""The latent-statistics route (experiments/latent_stats_route.py): sensitivity, noise, accounting, estimates."""

import math

import numpy as np
import pytest
import torch

from experiments import latent_stats_route as route
from pate_lightning.generators.decoders import build_vae
from pate_lightning.io import save_torch
from pate_lightning.privacy import analysis
from pate_lightning.privacy.scope import end_to_end_privacy
from pate_lightning.stacked.layers import member_state_dict


def test_one_record_moves_each_scaled_statistic_by_at_most_one():
    """Add/remove neighbours: with the same noise draw, the releases differ by the record's clipped terms only."""
    z, labels, bound = torch.randn(50, 4) * 3, torch.randint(0, 3, (50,)), 2.0
    extra, extra_label = torch.tensor([[40.0, -30.0, 5.0, 1.0]]), torch.tensor([1])
    a = route.release_moments(z, labels, 3, bound, 1.0, torch.Generator().manual_seed(0))
    b = route.release_moments(torch.cat([z, extra]), torch.cat([labels, extra_label]), 3, bound, 1.0,
                              torch.Generator().manual_seed(0))
    moved_sums = (b["sums"] - a["sums"]).norm() / bound
    moved_outer = (b["outer"] - a["outer"]).norm() / bound**2
    moved_counts = (b["counts"] - a["counts"]).norm()
    assert moved_sums == pytest.approx(1.0, rel=1e-4) and moved_outer == pytest.approx(1.0, rel=1e-4)
    assert moved_counts == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(b["sums"][[0, 2]], a["sums"][[0, 2]])  # the other classes do not move


def test_noise_has_the_stated_scale():
    z, labels = torch.zeros(1, 2), torch.zeros(1, dtype=torch.long)
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([route.release_moments(z, labels, 1, 3.0, 2.0, gen)["sums"] for _ in range(4000)])
    assert draws.std().item() == pytest.approx(2.0 * 3.0, rel=0.05)  # sigma * bound


def test_release_rdp_is_three_gaussians_and_the_solved_noise_meets_the_target():
    orders = np.asarray(analysis.DEFAULT_ORDERS)
    assert np.allclose(route.release_rdp(5.0), 3 * orders / (2 * 25.0))
    sigma = route.sigma_for_epsilon(1.0)
    eps = analysis.rdp_to_dp(orders, route.release_rdp(sigma), 1e-5, "balle2020")[0]
    assert 0.99 < eps <= 1.0


def test_class_gaussians_recover_the_moments_without_noise():
    gen = torch.Generator().manual_seed(2)
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]])
    z = torch.randn(20000, 2, generator=gen) @ torch.linalg.cholesky(cov).T + torch.tensor([0.5, -0.5])
    released = route.release_moments(z, torch.zeros(20000, dtype=torch.long), 1, 100.0, 1e-9, gen)
    means, covs = route.class_gaussians(released)
    assert torch.allclose(means[0], torch.tensor([0.5, -0.5]), atol=0.05)
    assert torch.allclose(covs[0], cov, atol=0.08)


def test_the_generator_entry_composes_end_to_end_with_pate():
    from pate_lightning.privacy.ledger import contract_entry

    rdp = route.release_rdp(route.sigma_for_epsilon(1.0))
    stages = [contract_entry(stage="generator", name="latent_stats", reads_private_data=True, dp=True, rdp=rdp),
              contract_entry(stage="selection", name="pate", reads_private_data=False, dp=False)]
    pate = [{"stage": "pate", "name": "gnmax", "rdp": analysis.rdp_gnmax_data_independent(40.0, analysis.DEFAULT_ORDERS) * 100}]
    result = end_to_end_privacy("synthetic", stages, pate, 1e-5)
    assert result["privacy_scope"] == "end_to_end"
    assert result["epsilon_labels"] < result["epsilon_end_to_end"] < result["epsilon_labels"] + 1.0 + 1e-9


def test_public_vae_loads_and_the_pool_is_balanced(tmp_path):
    encoder, decoder = build_vae("mlp", 1, 3, (16,), 10)
    with torch.no_grad():  # build_vae leaves the weights to the module's initialisation
        for parameter in [*encoder.parameters(), *decoder.parameters()]:
            parameter.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    state = {f"encoder.{k}": v for k, v in member_state_dict(encoder, 0).items()}
    state |= {f"decoder.{k}": v for k, v in member_state_dict(decoder, 0).items()}
    save_torch(tmp_path / "vae_full.pth", state)
    loaded_encoder, loaded_decoder = route.public_vae(tmp_path / "vae_full.pth")
    x, labels = torch.rand(1, 5, 1, 28, 28), torch.randint(0, 10, (1, 5))
    assert torch.equal(loaded_encoder(x, labels)[0], encoder(x, labels)[0])
    images, pool_labels = route.sample_pool(loaded_decoder, torch.zeros(10, 3), torch.eye(3).expand(10, 3, 3), 4,
                                            torch.Generator().manual_seed(0))
    assert images.shape == (40, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.bincount(pool_labels).tolist() == [4] * 10 and not math.isnan(images.sum().item())
