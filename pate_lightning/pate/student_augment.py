"""FixMatch's two views of a 28 x 28 grayscale digit: a weak one (a small shift) and a strong one.

Weak: a random translation of up to 10% of the side (2.8 px), FixMatch's "flip-and-shift" without the
flip, which would turn digits into other symbols. Strong: a wide random affine (rotation, scale,
shift) drawn per image and warped for the whole batch at once, then per-image
``torchvision.transforms.v2`` elastic distortion (optional: measured 0.76 ms an image on one CPU
thread, more than the network) and random erasing, the Cutout that FixMatch's strong augmentation
always ends with. Images stay in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from pate_lightning.data.augment import AffineRange, apply_affine, draw_affine

WEAK = AffineRange(degrees=0.0, translate=0.1, scale=(1.0, 1.0))
STRONG = AffineRange(degrees=30.0, translate=0.15, scale=(0.75, 1.2))


@dataclass(frozen=True)
class StrongAugment:
    """The strong view's per-image steps after the batched affine.

    Args:
        elastic: probability of a ``v2.ElasticTransform`` (alpha 30 px, sigma 4 px) per image.
        erase_scale: area range of the erased rectangle (always one, filled with 0).
    """

    elastic: float = 0.0
    erase_scale: tuple[float, float] = (0.02, 0.2)

    def transform(self) -> v2.Transform:
        steps: list[v2.Transform] = []
        if self.elastic > 0:
            steps.append(v2.RandomApply([v2.ElasticTransform(alpha=30.0, sigma=4.0)], p=self.elastic))
        steps.append(v2.RandomErasing(p=1.0, scale=self.erase_scale, value=0.0))
        return v2.Compose(steps)


def weak_view(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, 28, 28) -> randomly shifted copies."""
    return apply_affine(images, draw_affine(len(images), generator, WEAK))


def strong_view(images: torch.Tensor, generator: torch.Generator, per_image: v2.Transform) -> torch.Tensor:
    """(B, 1, 28, 28) -> a wide random affine per image, then ``per_image`` (v2 draws from torch's global RNG,
    which ``seed_everything`` seeds)."""
    warped = apply_affine(images, draw_affine(len(images), generator, STRONG))  # (B, 1, 28, 28)
    return torch.stack([per_image(image) for image in warped]).clamp_(0, 1)
