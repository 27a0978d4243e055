"""The VAE of the per-teacher approach: MLP encoder and decoder on 28x28 images in [0, 1].

Both are stacked over K teachers (see ``ensemble.py``); a single teacher is K = 1, and one
member's state_dict is what ``decoder.pth`` holds (latent size recoverable from ``hidden.0.weight``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pate_lightning.models.ensemble import EnsembleLinear, load_member_state_dict

IMAGE_SIZE = 28 * 28


class Encoder(nn.Module):
    """x (K, B, 784) -> (mu, logvar), each (K, B, latent_dim)."""

    def __init__(self, num_members: int, latent_dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        sizes = [IMAGE_SIZE, *hidden_dims]
        self.hidden = nn.ModuleList(EnsembleLinear(num_members, a, b) for a, b in zip(sizes, sizes[1:]))
        self.mu = EnsembleLinear(num_members, sizes[-1], latent_dim)
        self.logvar = EnsembleLinear(num_members, sizes[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.mu(x), self.logvar(x)


class Decoder(nn.Module):
    """z (K, B, latent_dim) -> logits (K, B, 784); ``forward`` gives images in [0, 1]."""

    def __init__(self, num_members: int, latent_dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        sizes = [latent_dim, *hidden_dims]
        self.hidden = nn.ModuleList(EnsembleLinear(num_members, a, b) for a, b in zip(sizes, sizes[1:]))
        self.out = EnsembleLinear(num_members, sizes[-1], IMAGE_SIZE)

    @property
    def latent_dim(self) -> int:
        return self.hidden[0].in_features

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            z = torch.relu(layer(z))
        return self.out(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))  # (K, B, 784) in [0, 1]

    @classmethod
    def from_state_dicts(cls, states: Sequence[dict[str, torch.Tensor]]) -> "Decoder":
        """Stack plain decoder state_dicts (one per teacher); sizes are read from the weights."""
        first = states[0]
        count = sum(1 for key in first if key.startswith("hidden.") and key.endswith(".weight"))
        if count == 0 or "out.weight" not in first:
            raise ValueError(f"not a decoder state_dict (keys: {sorted(first)[:6]})")
        latent_dim = first["hidden.0.weight"].shape[1]
        hidden_dims = [first[f"hidden.{i}.weight"].shape[0] for i in range(count)]
        decoder = cls(len(states), latent_dim, hidden_dims)
        for k, state in enumerate(states):
            load_member_state_dict(decoder, k, state)
        return decoder


def reset_members(module: nn.Module, generators: Sequence[torch.Generator]) -> None:
    """Initialise member k of every stacked layer from ``generators[k]`` (layer order is fixed)."""
    layers = [m for m in module.modules() if isinstance(m, EnsembleLinear)]
    for k, gen in enumerate(generators):
        for layer in layers:
            layer.reset_member(k, gen)
