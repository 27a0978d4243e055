"""Random affine and elastic augmentation, drawn per image and applied to a whole batch at once.

Parameters are drawn on the CPU from the caller's own generator (a teacher's, a student's view, a
render's), so they do not depend on the device, on the global RNG or on other teachers; then one
``grid_sample`` warps every image. torchvision's transforms draw from the global RNG and (elastic)
take one displacement per call, about 1 ms an image on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


@dataclass(frozen=True)
class AffineRange:
    degrees: float = 10.0
    translate: float = 0.1  # fraction of the image side (0.1 of 28 px = 2.8 px)
    scale: tuple[float, float] = (0.9, 1.1)


def draw_affine(count: int, generator: torch.Generator, ranges: AffineRange = AffineRange()) -> torch.Tensor:
    """Affine matrices (count, 2, 3) for ``F.affine_grid``, in normalized coordinates."""
    return affine_from_uniform(torch.rand(count, 4, generator=generator), ranges)


def affine_from_uniform(u: torch.Tensor, ranges: AffineRange = AffineRange()) -> torch.Tensor:
    """Affine matrices (..., 2, 3) from uniform draws (..., 4): angle, scale, x shift, y shift.

    Split from ``draw_affine`` so a stacked loader draws each teacher's uniforms from its own
    generator and turns all of them into matrices in one pass (250 teachers: 23 ms -> ~1 ms a step).
    """
    angle = (u[..., 0] * 2 - 1) * math.radians(ranges.degrees)
    scale = ranges.scale[0] + u[..., 1] * (ranges.scale[1] - ranges.scale[0])
    # affine_grid maps output to input coordinates, so the inverse scale zooms by `scale`
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = (u[..., 2:] * 2 - 1) * ranges.translate * 2  # normalized coordinates span 2
    rows = (torch.stack([cos, -sin, shift[..., 0]], -1), torch.stack([sin, cos, shift[..., 1]], -1))
    return torch.stack(rows, -2)


def apply_affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp images (..., 1, 28, 28) with matrices (..., 2, 3); values stay in [0, 1]."""
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])  # (N, 1, 28, 28)
    grid = F.affine_grid(theta.reshape(-1, 2, 3).to(flat), list(flat.shape), align_corners=False)
    warped = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.clamp_(0, 1).reshape(*lead, *images.shape[-3:])


def elastic(images: torch.Tensor, gen: torch.Generator, alpha: float, sigma: float, fast: bool = False) -> torch.Tensor:
    """torchvision's ElasticTransform on each image (N, 1, H, W), its displacement drawn from ``gen``.

    The displacement is built as ``v2.ElasticTransform.make_params`` builds it (uniform noise in [-1, 1],
    Gaussian blur with kernel ``8 sigma + 1``, scaled by ``alpha / size``), but per image and from our
    generator. ``fast`` blurs with two 1-D passes instead of torchvision's 2-D kernel: the same field up to
    float rounding (~1e-6; a test checks it), 4x faster on a CPU, which matters when every training step
    distorts a batch (FixMatch's strong view). The font renders keep the exact path, so their cached sets
    stay byte-identical.
    """
    n, _, h, w = images.shape
    kernel = int(8 * sigma + 1) | 1
    noise = torch.rand(n * 2, 1, h, w, generator=gen) * 2 - 1
    blur = _separable_blur if fast else TF.gaussian_blur
    blurred = blur(noise, [kernel, kernel], [sigma, sigma]).view(n, 2, h, w)
    displacement = torch.stack([blurred[:, 0] * alpha / w, blurred[:, 1] * alpha / h], -1)  # (N, H, W, 2)
    return elastic_with(images, displacement.to(images.device))


def elastic_with(images: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """``v2.functional.elastic`` batched over per-image displacements (N, H, W, 2): one grid_sample.

    Same identity grid (pixel centres, align_corners=False), bilinear, zero padding; a test checks
    it against torchvision image by image.
    """
    n, _, h, w = images.shape
    theta = torch.eye(2, 3, device=images.device).expand(n, 2, 3)
    identity = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    warped = F.grid_sample(images, identity + displacement, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.clamp(0, 1)


def _separable_blur(images: torch.Tensor, kernel_size: list[int], sigma: list[float]) -> torch.Tensor:
    """``TF.gaussian_blur`` (reflect padding, the same normalized kernel) as a row pass and a column pass:
    its 2-D kernel is the outer product of these two."""
    half = kernel_size[0] // 2
    x = torch.linspace(-half, half, kernel_size[0])
    kernel = torch.exp(-0.5 * (x / sigma[0]) ** 2)
    kernel = (kernel / kernel.sum()).to(images)
    rows = F.conv2d(F.pad(images, (half, half, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(rows, (0, 0, half, half), mode="reflect"), kernel.view(1, 1, -1, 1))
