"""DP-SGD's step noise: keyed from OS entropy, one draw for a private stack, per-teacher streams when seeded."""

import pytest
import torch

import pate_lightning.generators.dp.noise as noise_module
from pate_lightning.generators.dp.module import DPTeacherVAEModule
from pate_lightning.generators.dp.noise import StepNoise
from pate_lightning.seeding import KEY_BYTES
from tests.helpers import torch_calls

CPU = torch.device("cpu")


def counting_keyed_generator(monkeypatch):
    calls = []
    real = noise_module.keyed_generator

    def spy(key, counter, device):
        calls.append((key, counter))
        return real(key, counter, device)

    monkeypatch.setattr(noise_module, "keyed_generator", spy)
    return calls


def test_private_stack_noise_is_one_draw_from_a_256_bit_key(monkeypatch):
    calls = counting_keyed_generator(monkeypatch)
    noise = StepNoise(None, [0, 1, 2, 3])
    first = noise.draw(0, 1000, CPU).clone()  # (K, P)
    assert len(calls) == 1 and len(calls[0][0]) == KEY_BYTES  # one generator for all teachers, keyed with 256 bits
    assert first.shape == (4, 1000) and abs(float(first.mean())) < 0.1 and abs(float(first.std()) - 1) < 0.1
    assert not torch.equal(first[0], first[1])  # teachers get different parts of the stream
    assert not torch.equal(noise.draw(1, 1000, CPU), first)  # the step is the counter
    assert not torch.equal(StepNoise(None, [0, 1, 2, 3]).draw(0, 1000, CPU), first)  # a fresh key per run


def test_seeded_teacher_noise_is_its_own_stream_keyed_by_the_step(monkeypatch):
    calls = counting_keyed_generator(monkeypatch)
    stacked = StepNoise(5, [0, 1, 2])
    rows = stacked.draw(3, 100, CPU).clone()
    assert [counter for _, counter in calls] == [3, 3, 3]  # one draw per teacher
    alone = StepNoise(5, [1])
    # counter-based: step 3 alone, never having drawn steps 0-2, is teacher 1's step 3 in the stack
    assert torch.equal(alone.draw(3, 100, CPU)[0], rows[1])
    assert not torch.equal(alone.draw(4, 100, CPU)[0], rows[1])
    assert not torch.equal(StepNoise(6, [1]).draw(3, 100, CPU)[0], rows[1])


def dp_vae(teacher_ids):
    return DPTeacherVAEModule(teacher_ids=teacher_ids, latent_dim=4, hidden_dims=(16,), seed=7, noise_multiplier=1.0)


def test_reparameterization_noise_of_a_dp_step_is_one_draw_that_padding_never_shifts():
    # as many torch calls for 30 teachers as for 3: no per-teacher draw, no host read of the batch mask
    assert torch_calls(dp_vae(list(range(30)))._draw_noise, torch.Size([30, 5, 4])) == torch_calls(
        dp_vae([0, 1, 2])._draw_noise, torch.Size([3, 5, 4]))
    eps = dp_vae([0, 1, 2])._draw_noise(torch.Size([3, 5, 4]))
    alone = dp_vae([1])
    # teacher 1's records get the same noise whatever the padding width of the stack it is in
    assert eps.shape == (3, 5, 4) and torch.equal(alone._draw_noise(torch.Size([1, 2, 4]))[0], eps[1, :2])
    assert not torch.equal(alone._draw_noise(torch.Size([1, 2, 4]))[0], eps[1, :2])  # the next step draws anew


@pytest.mark.parametrize("seed", [None, 5])
def test_noise_buffer_is_reused_and_resized(seed):
    noise = StepNoise(seed, [0, 1])
    first = noise.draw(0, 10, CPU)
    assert noise.draw(1, 10, CPU).data_ptr() == first.data_ptr() and noise.draw(2, 12, CPU).shape == (2, 12)
