"""Stacked layers: K independent members in one module, one batched matmul per layer.

Member k's parameters are slice ``[k]`` of each tensor, with the names and shapes of the plain
``nn.Linear`` it replaces, so ``member_state_dict(module, k)`` is an ordinary state_dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """K independent ``nn.Linear(in_features, out_features)``: input (K, B, in) -> (K, B, out)."""

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(num_members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))

    def reset_member(self, k: int, generator: torch.Generator) -> None:
        # nn.Linear's default init (kaiming_uniform with a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in)).
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight[k].copy_(torch.rand(self.weight.shape[1:], generator=generator) * 2 * bound - bound)
            self.bias[k].copy_(torch.rand(self.bias.shape[1:], generator=generator) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))  # (K, B, out)


def num_members(module: nn.Module) -> int:
    return next(module.parameters()).shape[0]


def member_state_dict(module: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Member k's parameters as a plain state_dict (names and shapes of the unstacked layers)."""
    return {name: tensor[k].detach().clone().cpu() for name, tensor in module.state_dict().items()}


def load_member_state_dict(module: nn.Module, k: int, state: dict[str, torch.Tensor]) -> None:
    """Copy a plain state_dict into member k; names and shapes must match exactly."""
    own = module.state_dict()
    if set(own) != set(state):
        raise ValueError(f"keys differ: missing {sorted(set(own) - set(state))}, unexpected {sorted(set(state) - set(own))}")
    for name, tensor in state.items():
        if own[name].shape[1:] != tensor.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape[1:])}")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name][k].copy_(tensor)
