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


def mersenne_words(generator):
    """The 624 Mersenne Twister words of a CPU generator's state (u64 slots after a 24-byte header)."""
    return np.frombuffer(generator.get_state().numpy().tobytes(), dtype=np.uint64, count=624, offset=24)


def test_unseeded_vote_noise_state_is_keyed_not_expanded_from_a_seed():
    votes = noise_source().votes
    # torch's manual_seed keeps the low 32 bits of any seed: 2^32 streams, searchable in minutes
    assert not torch.equal(votes.get_state(), torch.Generator().manual_seed(votes.initial_seed()).get_state())
    words = mersenne_words(votes).astype(np.uint64)
    # a seeded twister's words follow the seeding recurrence from word 0; keyed words are all hash output
    recurrence = (1812433253 * (words[:-1] ^ (words[:-1] >> np.uint64(30))) + np.arange(1, 624, dtype=np.uint64)) % 2**32
    assert (recurrence != words[1:]).mean() > 0.99


def test_privacy_keys_take_256_bits_from_secrets_and_use_every_bit(monkeypatch):
    import pate_lightning.seeding as seeding

    asked = []
    real = seeding.secrets.token_bytes
    monkeypatch.setattr(seeding.secrets, "token_bytes", lambda n: asked.append(n) or real(n))
    seeding.private_generators(None, [0, 1], seeding.Stream.POISSON)  # Poisson sampling, the latent release
    noise_source()  # the vote noise
    assert asked == [32, 32, 32]
    key = bytes(range(32))
    draws = [torch.randn(8, generator=seeding.keyed_generator(k, 0)) for k in (key, key[:31] + b"\x00", key[:20] + b"\xff" + key[21:])]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])  # bytes past 16 matter
    with pytest.raises(ValueError, match="at least 128 bits"):
        seeding.keyed_generator(bytes(8), 0)
