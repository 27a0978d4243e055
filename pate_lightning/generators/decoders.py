"""The decoder contract: what a ``decoder.pth`` is (architecture, latent size, classes), and building one.

A state_dict with ``deconv.*`` keys is the conv decoder, otherwise the MLP; ``conditional_classes``
(absent in unconditional and older files) is the class count; ``hidden.0.weight`` has
``latent_dim + num_classes`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from pate_lightning.generators.conv_vae import ConvDecoder, ConvEncoder
from pate_lightning.stacked.layers import load_member_state_dict
from pate_lightning.generators.vae import Decoder, Encoder

ARCHITECTURES = ("mlp", "conv")


@dataclass(frozen=True)
class DecoderSpec:
    architecture: str
    latent_dim: int
    hidden_dims: tuple[int, ...]
    num_classes: int

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0


def decoder_spec(state: dict[str, torch.Tensor]) -> DecoderSpec:
    """Read a decoder state_dict's shape; ValueError if it is not one of ours."""
    count = sum(1 for key in state if key.startswith("hidden.") and key.endswith(".weight"))
    conv = "deconv.0.weight" in state
    if count == 0 or "hidden.0.weight" not in state or not (conv or "out.weight" in state):
        raise ValueError(f"not a VAE decoder state_dict (keys {sorted(state)[:6]}); expected hidden.*.weight and out.weight or deconv.*")
    num_classes = int(state["conditional_classes"]) if "conditional_classes" in state else 0
    latent_dim = int(state["hidden.0.weight"].shape[1]) - num_classes
    hidden = (int(state["hidden.0.weight"].shape[0]),) if conv else tuple(int(state[f"hidden.{i}.weight"].shape[0]) for i in range(count))
    return DecoderSpec("conv" if conv else "mlp", latent_dim, hidden, num_classes)


def build_vae(architecture: str, num_members: int, latent_dim: int, hidden_dims: Sequence[int], num_classes: int) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) stacked over ``num_members``; the conv pair uses ``hidden_dims[0]`` as its fc width."""
    if architecture == "mlp":
        return Encoder(num_members, latent_dim, hidden_dims, num_classes), Decoder(num_members, latent_dim, hidden_dims, num_classes)
    if architecture == "conv":
        return ConvEncoder(num_members, latent_dim, hidden_dims[0], num_classes), ConvDecoder(num_members, latent_dim, hidden_dims[0], num_classes)
    raise ValueError(f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")


def decoder_from_states(states: Sequence[dict[str, torch.Tensor]]) -> nn.Module:
    """Stack plain decoder state_dicts (one per teacher, equal specs); sizes are read from the weights."""
    spec = decoder_spec(states[0])
    _, decoder = build_vae(spec.architecture, len(states), spec.latent_dim, spec.hidden_dims, spec.num_classes)
    for k, state in enumerate(states):
        load_member_state_dict(decoder, k, state)
    return decoder
