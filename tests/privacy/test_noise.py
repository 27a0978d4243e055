import numpy as np
import pytest
import torch

from pate_lightning.privacy import NOT_PRIVATE, noise_source


def test_unseeded_noise_differs_and_records_no_seed():
    first, second = noise_source(), noise_source()
    assert not torch.equal(torch.randn(8, generator=first.votes), torch.randn(8, generator=second.votes))
    assert first.release.standard_normal() != second.release.standard_normal()
    assert first.describe() == {"private": True, "noise_seed": None, "noise_seed_note": first.describe()["noise_seed_note"]}


def test_seeded_noise_is_reproducible_and_says_not_private():
    first, second = noise_source(5), noise_source(5)
    assert torch.equal(torch.randn(8, generator=first.votes), torch.randn(8, generator=second.votes))
    assert np.random.default_rng(5).standard_normal() == noise_source(5).release.standard_normal()
    described = first.describe()
    assert described["private"] is False and described["noise_seed"] == 5 and "NOT private" in described["noise_seed_note"]
    assert NOT_PRIVATE == "reproducible: NOT PRIVATE"


@pytest.mark.parametrize("seed", [-1, 1.5, True, "42"])
def test_bad_seed_raises(seed):
    with pytest.raises(ValueError, match="seed must be"):
        noise_source(seed)
