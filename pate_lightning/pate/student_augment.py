"""FixMatch's two views of a 28 x 28 grayscale digit: a weak one (a small shift) and a strong one.

Weak: a random translation of up to 10% of the side, FixMatch's "flip-and-shift" without the flip,
which would turn digits into other symbols. Two ways (``WEAK_VIEWS``): ``affine``, a sub-pixel shift of
up to 2.8 px resampled bilinearly (the first one built, kept so earlier runs reproduce), and ``crop``,
a whole-pixel shift of up to 3 px (pad with background and crop, as FixMatch shifts its images), which
copies pixels without resampling. Resampling at a sub-pixel offset blurs: a student that only ever
trained on bilinear shifts met sharper test images than it learned on (measured on one fix120 student:
98.2% on the raw test images, 98.6-98.8% on the same images shifted by 0.1-0.5 px).

Strong: a wide random affine (rotation, scale, shift) drawn per image, then (optionally, per image
with probability ``elastic``) the elastic distortion of Simard et al. 2003, the classic augmentation
for handwritten digits, both warped for the whole batch at once (``data.augment``: torchvision's
per-image ``v2.ElasticTransform`` measured 0.76 ms an image on one CPU thread, more than the network's
step; the batched one ~0.04 ms); then per-image random erasing, the Cutout that FixMatch's strong
augmentation always ends with. Images stay in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from pate_lightning.data.augment import AffineRange, apply_affine, draw_affine, elastic

WEAK = AffineRange(degrees=0.0, translate=0.1, scale=(1.0, 1.0))
WEAK_SHIFT = 3  # the crop view's largest shift in pixels: 10% of 28, rounded
WEAK_VIEWS = ("affine", "crop")
STRONG = AffineRange(degrees=30.0, translate=0.15, scale=(0.75, 1.2))


@dataclass(frozen=True)
class StrongAugment:
    """The strong view's steps after the batched affine.

    Args:
        elastic: probability of an elastic distortion per image.
        elastic_alpha: strength of the distortion in torchvision's parametrization, where a unit of blurred
            noise moves a pixel by alpha / 2 px: 68 is Simard et al. 2003's alpha of 34 px.
        elastic_sigma: smoothness of the distortion: the noise's Gaussian blur, in pixels (Simard's 4).
        erase_scale: area range of the erased rectangle (always one, filled with 0).
    """

    elastic: float = 0.0
    elastic_alpha: float = 68.0
    elastic_sigma: float = 4.0
    erase_scale: tuple[float, float] = (0.02, 0.2)

    def erasing(self) -> v2.Transform:
        """The per-image step (v2 draws from torch's global RNG, which ``seed_everything`` seeds)."""
        return v2.RandomErasing(p=1.0, scale=self.erase_scale, value=0.0)


def weak_view(images: torch.Tensor, generator: torch.Generator, how: str = "affine") -> torch.Tensor:
    """(B, 1, 28, 28) -> randomly shifted copies, ``how`` one of ``WEAK_VIEWS``."""
    if how == "crop":
        return pixel_shift(images, torch.randint(-WEAK_SHIFT, WEAK_SHIFT + 1, (len(images), 2), generator=generator))
    if how != "affine":
        raise ValueError(f"unknown weak view {how!r}; choose one of {WEAK_VIEWS}")
    return apply_affine(images, draw_affine(len(images), generator, WEAK))


def view_averaged_log_probs(
    classify: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, views: int, generator: torch.Generator,
    how: str = "affine",
) -> torch.Tensor:
    """(B, 1, 28, 28) -> (B, C) log of the class probabilities averaged over ``views`` weak views of each image
    (test-time augmentation); ``classify`` maps images to log-probabilities.

    >>> uniform = lambda x: torch.full((len(x), 10), 0.1).log()
    >>> view_averaged_log_probs(uniform, torch.zeros(2, 1, 28, 28), 4, torch.Generator()).exp().sum(1).tolist()
    [1.0, 1.0]
    """
    if views < 1:
        raise ValueError(f"test-time views must be >= 1, got {views}")
    # mean of probabilities, not of log-probabilities: one confident wrong view must not outvote the rest
    probs = torch.stack([classify(weak_view(images, generator, how)).exp() for _ in range(views)])  # (V, B, C)
    return probs.mean(dim=0).log()


def pixel_shift(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images moved by whole pixels, (B, 2) shifts (down, right); vacated pixels are 0.

    Batched pad-and-crop (one gather for the batch; torchvision's ``RandomCrop`` crops a batch at one
    offset, so per-image offsets would take a call per image).

    >>> pixel_shift(torch.arange(4.0).reshape(1, 1, 2, 2), torch.tensor([[1, 0]])).flatten().tolist()
    [0.0, 0.0, 0.0, 1.0]
    """
    reach = int(shifts.abs().max()) if len(shifts) else 0
    padded = F.pad(images, (reach, reach, reach, reach))  # (B, C, H + 2r, W + 2r)
    height, width = images.shape[-2:]
    rows = torch.arange(height, device=images.device) + reach - shifts[:, :1].to(images.device)  # (B, H)
    cols = torch.arange(width, device=images.device) + reach - shifts[:, 1:].to(images.device)  # (B, W)
    batch = torch.arange(len(images), device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def strong_view(images: torch.Tensor, generator: torch.Generator, strong: StrongAugment) -> torch.Tensor:
    """(B, 1, 28, 28) -> a wide random affine per image, an elastic distortion on a share ``strong.elastic`` of
    them (drawn from ``generator``), then one erased rectangle each."""
    warped = apply_affine(images, draw_affine(len(images), generator, STRONG))  # (B, 1, 28, 28)
    if strong.elastic > 0:  # none drawn at 0, so a run without it draws exactly what it drew before
        chosen = (torch.rand(len(images), generator=generator) < strong.elastic).to(warped.device)  # (B,)
        warped[chosen] = elastic(warped[chosen], generator, strong.elastic_alpha, strong.elastic_sigma, fast=True)
    erase = strong.erasing()
    return torch.stack([erase(image) for image in warped]).clamp_(0, 1)
