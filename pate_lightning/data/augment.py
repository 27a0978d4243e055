"""Small random affine augmentation, drawn per teacher and applied to a whole stacked batch at once.

Parameters are drawn on the CPU from the teacher's own generator (so they do not depend on the
device or on the other teachers), then one ``grid_sample`` warps every image on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
