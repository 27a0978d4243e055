"""The VAE of the per-teacher approach: MLP encoder and decoder on 28x28 images in [0, 1].

Both are stacked over K teachers (see ``ensemble.py``); a single teacher is K = 1, and one
member's state_dict is what ``decoder.pth`` holds (latent size recoverable from ``hidden.0.weight``).
A class-conditional pair (``num_classes > 0``, Kingma et al. 2014's M2 / Sohn et al. 2015's CVAE)
takes the label's one-hot beside the image and beside the latent; its state_dicts then carry a
``num_classes`` entry, so ``hidden.0.weight`` has ``latent_dim + num_classes`` inputs and both are
recoverable. Unconditional state_dicts are unchanged.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pate_lightning.stacked.layers import EnsembleLinear, load_member_state_dict

IMAGE_SIZE = 28 * 28


def register_classes(module: nn.Module, num_members: int, num_classes: int) -> None:
    """Record the class count in the state_dict (one entry per member) of a conditional module."""
    module.num_classes = num_classes
    if num_classes:
        module.register_buffer("conditional_classes", torch.full((num_members,), num_classes, dtype=torch.long))


def with_label(x: torch.Tensor, labels: Optional[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Append the one-hot label (K, B, C) to features (K, B, D); unconditional modules take x as is."""
    if not num_classes:
        return x
    if labels is None:
        raise ValueError("a conditional VAE needs the labels of the batch")
    return torch.cat([x, F.one_hot(labels, num_classes).to(x.dtype)], -1)


class Encoder(nn.Module):
    """x (K, B, 784) [, labels (K, B)] -> (mu, logvar), each (K, B, latent_dim)."""

    def __init__(self, num_members: int, latent_dim: int, hidden_dims: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        register_classes(self, num_members, num_classes)
        sizes = [IMAGE_SIZE + num_classes, *hidden_dims]
        self.hidden = nn.ModuleList(EnsembleLinear(num_members, a, b) for a, b in zip(sizes, sizes[1:]))
        self.mu = EnsembleLinear(num_members, sizes[-1], latent_dim)
        self.logvar = EnsembleLinear(num_members, sizes[-1], latent_dim)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = with_label(x.flatten(2), labels, self.num_classes)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.mu(x), self.logvar(x)


class Decoder(nn.Module):
    """z (K, B, latent_dim) [, labels (K, B)] -> logits (K, B, 784); ``forward`` gives images in [0, 1]."""

    def __init__(self, num_members: int, latent_dim: int, hidden_dims: Sequence[int], num_classes: int = 0) -> None:
        super().__init__()
        register_classes(self, num_members, num_classes)
        sizes = [latent_dim + num_classes, *hidden_dims]
        self.hidden = nn.ModuleList(EnsembleLinear(num_members, a, b) for a, b in zip(sizes, sizes[1:]))
        self.out = EnsembleLinear(num_members, sizes[-1], IMAGE_SIZE)

    @property
    def latent_dim(self) -> int:
        return self.hidden[0].in_features - self.num_classes

    def logits(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = with_label(z, labels, self.num_classes)
        for layer in self.hidden:
            z = torch.relu(layer(z))
        return self.out(z)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(z, labels))  # (K, B, 784) in [0, 1]

    @classmethod
    def from_state_dicts(cls, states: Sequence[dict[str, torch.Tensor]]) -> "Decoder":
        """Stack plain decoder state_dicts (one per teacher); sizes are read from the weights."""
        first = states[0]
        count = sum(1 for key in first if key.startswith("hidden.") and key.endswith(".weight"))
        if count == 0 or "out.weight" not in first:
            raise ValueError(f"not a decoder state_dict (keys: {sorted(first)[:6]})")
        num_classes = int(first["conditional_classes"]) if "conditional_classes" in first else 0
        latent_dim = first["hidden.0.weight"].shape[1] - num_classes
        hidden_dims = [first[f"hidden.{i}.weight"].shape[0] for i in range(count)]
        decoder = cls(len(states), latent_dim, hidden_dims, num_classes)
        for k, state in enumerate(states):
            load_member_state_dict(decoder, k, state)
        return decoder


def reset_members(module: nn.Module, generators: Sequence[torch.Generator]) -> None:
    """Initialise member k of every stacked layer from ``generators[k]`` (layer order is fixed)."""
    layers = [m for m in module.modules() if hasattr(m, "reset_member")]
    for k, gen in enumerate(generators):
        for layer in layers:
            layer.reset_member(k, gen)
