import pytest
import torch
import torchvision.transforms.v2.functional as TF

from pate_lightning.data.augment import _separable_blur, draw_affine, elastic, elastic_with
from pate_lightning.pate.student_augment import STRONG, StrongAugment, strong_view


def test_batched_elastic_matches_torchvision():
    images = torch.rand(3, 1, 28, 28)
    displacement = torch.randn(3, 28, 28, 2) * 0.1
    ours = elastic_with(images, displacement)
    for i in range(3):
        theirs = TF.elastic(images[i], displacement[i : i + 1]).clamp(0, 1)
        assert torch.allclose(ours[i], theirs, atol=1e-5)


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_separable_blur_is_torchvisions_blur(sigma):
    noise = torch.rand(5, 1, 28, 28) * 2 - 1
    kernel = int(8 * sigma + 1) | 1
    ours = _separable_blur(noise, [kernel, kernel], [sigma, sigma])
    assert torch.allclose(ours, TF.gaussian_blur(noise, [kernel, kernel], [sigma, sigma]), atol=1e-5)


def test_fast_elastic_draws_the_same_field():
    images = torch.rand(4, 1, 28, 28)
    exact = elastic(images, torch.Generator().manual_seed(3), 34.0, 4.0)
    fast = elastic(images, torch.Generator().manual_seed(3), 34.0, 4.0, fast=True)
    assert not torch.equal(exact, images) and torch.allclose(fast, exact, atol=1e-4)


def _digit_strokes(count: int) -> torch.Tensor:
    images = torch.zeros(count, 1, 28, 28)
    images[:, :, 6:22, 12:16] = 1.0  # a thick vertical stroke, a "1"
    return images


def test_strong_view_without_elastic_draws_nothing_for_it():
    images = _digit_strokes(6)
    torch.manual_seed(0)  # the erasing draws from the global RNG
    plain = strong_view(images, torch.Generator().manual_seed(1), StrongAugment())
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    again = strong_view(images, generator, StrongAugment(elastic=0.0, elastic_alpha=99.0))
    assert torch.equal(plain, again)
    assert torch.equal(generator.get_state(), _after_affine_only(images))


def _after_affine_only(images: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    draw_affine(len(images), generator, STRONG)  # all the view draws from its generator at elastic 0
    return generator.get_state()


def test_strong_view_elastic_share():
    images = _digit_strokes(8)
    torch.manual_seed(0)
    none = strong_view(images, torch.Generator().manual_seed(1), StrongAugment(elastic=0.0))
    torch.manual_seed(0)
    every = strong_view(images, torch.Generator().manual_seed(1), StrongAugment(elastic=1.0))
    assert every.shape == images.shape and 0 <= float(every.min()) and float(every.max()) <= 1
    # the same affine draws, then every image distorted: each differs from its undistorted view
    assert all(not torch.equal(a, b) for a, b in zip(every, none))
