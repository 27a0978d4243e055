"""A convolutional VAE beside the MLP: two stride-2 convolutions each way, no BatchNorm.

No BatchNorm so per-sample gradients (DP-SGD) stay per sample. Stacked over K teachers like the
MLP (grouped convolutions); the decoder's state_dict keeps the MLP's ``hidden.0.weight`` first, so
the latent size (and, with ``conditional_classes``, the class count) is read the same way.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pate_lightning.generators.ensemble_conv import EnsembleConv2d, EnsembleConvTranspose2d
from pate_lightning.stacked.layers import EnsembleLinear
from pate_lightning.generators.vae import register_classes, with_label

CHANNELS = (32, 64)  # 28 -> 14 -> 7
FEATURES = CHANNELS[1] * 7 * 7


class ConvEncoder(nn.Module):
    """images (K, B, 1, 28, 28) [, labels (K, B)] -> (mu, logvar), each (K, B, latent_dim)."""

    def __init__(self, num_members: int, latent_dim: int, hidden_dim: int, num_classes: int = 0) -> None:
        super().__init__()
        register_classes(self, num_members, num_classes)
        self.conv = nn.ModuleList([
            EnsembleConv2d(num_members, 1, CHANNELS[0], 4, 2, 1),
            EnsembleConv2d(num_members, CHANNELS[0], CHANNELS[1], 4, 2, 1),
        ])
        self.hidden = nn.ModuleList([EnsembleLinear(num_members, FEATURES + num_classes, hidden_dim)])
        self.mu = EnsembleLinear(num_members, hidden_dim, latent_dim)
        self.logvar = EnsembleLinear(num_members, hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(*x.shape[:2], 1, 28, 28)
        for layer in self.conv:
            x = torch.relu(layer(x))  # (K, B, 32, 14, 14) then (K, B, 64, 7, 7)
        h = torch.relu(self.hidden[0](with_label(x.flatten(2), labels, self.num_classes)))
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """z (K, B, latent_dim) [, labels (K, B)] -> logits (K, B, 784); ``forward`` gives images in [0, 1]."""

    def __init__(self, num_members: int, latent_dim: int, hidden_dim: int, num_classes: int = 0) -> None:
        super().__init__()
        register_classes(self, num_members, num_classes)
        self.hidden = nn.ModuleList([
            EnsembleLinear(num_members, latent_dim + num_classes, hidden_dim),
            EnsembleLinear(num_members, hidden_dim, FEATURES),
        ])
        self.deconv = nn.ModuleList([
            EnsembleConvTranspose2d(num_members, CHANNELS[1], CHANNELS[0], 4, 2, 1),
            EnsembleConvTranspose2d(num_members, CHANNELS[0], 1, 4, 2, 1),
        ])

    @property
    def latent_dim(self) -> int:
        return self.hidden[0].in_features - self.num_classes

    def logits(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = with_label(z, labels, self.num_classes)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        h = h.view(*h.shape[:2], CHANNELS[1], 7, 7)
        h = torch.relu(self.deconv[0](h))  # (K, B, 32, 14, 14)
        return self.deconv[1](h).flatten(2)  # (K, B, 784)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(z, labels))
