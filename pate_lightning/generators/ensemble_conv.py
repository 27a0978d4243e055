"""Stacked convolutions: K independent ``nn.Conv2d`` / ``nn.ConvTranspose2d`` as one grouped convolution.

Input (K, B, C, H, W) is laid out as (B, K * C, H, W) and convolved with ``groups=K``, so member k
only ever sees its own channels. Member k's weight is slice ``[k]`` with the plain layer's shape,
so ``ensemble.member_state_dict`` exports it unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _EnsembleConv(nn.Module):
    transposed = False

    def __init__(self, num_members: int, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding = stride, padding
        shape = (in_channels, out_channels) if self.transposed else (out_channels, in_channels)
        self.weight = nn.Parameter(torch.empty(num_members, *shape, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(num_members, out_channels))

    def reset_member(self, k: int, generator: torch.Generator) -> None:
        # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = weight.size(1) * kernel area
        bound = 1.0 / math.sqrt(self.weight.shape[2] * self.weight.shape[3] * self.weight.shape[4])
        with torch.no_grad():
            self.weight[k].copy_(torch.rand(self.weight.shape[1:], generator=generator) * 2 * bound - bound)
            self.bias[k].copy_(torch.rand(self.bias.shape[1:], generator=generator) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b = x.shape[:2]
        grouped = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])  # (B, K*C, H, W)
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        conv = F.conv_transpose2d if self.transposed else F.conv2d
        out = conv(grouped, weight, self.bias.reshape(-1), stride=self.stride, padding=self.padding, groups=k)
        return out.view(b, k, self.out_channels, *out.shape[2:]).transpose(0, 1)  # (K, B, C', H', W')


class EnsembleConv2d(_EnsembleConv):
    """K independent ``nn.Conv2d(in, out, kernel, stride, padding)``: (K, B, in, H, W) -> (K, B, out, H', W')."""


class EnsembleConvTranspose2d(_EnsembleConv):
    """K independent ``nn.ConvTranspose2d(in, out, kernel, stride, padding)``."""

    transposed = True
