"""Stacked layers: K independent members in one module, one batched matmul per layer.

Member k's parameters are slice ``[k]`` of each tensor; ``member_state_dict(module, k)`` gives
them the names and shapes of the plain ``nn.Linear`` they replace (an ordinary state_dict).
Weights are stored input-major, (K, in, out), so the batched matmul and its gradients need no
transposed copies (measured: the (K, out, in) layout spent a third of each CPU step copying).
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
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))

    def reset_member(self, k: int, generator: torch.Generator) -> None:
        # nn.Linear's default init (kaiming_uniform with a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in)).
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            # drawn in nn.Linear's (out, in) order so a member's values match the unstacked layer's
            weight = torch.rand(self.out_features, self.in_features, generator=generator) * 2 * bound - bound
            self.weight[k].copy_(weight.t())
            self.bias[k].copy_(torch.rand(self.bias.shape[1:], generator=generator) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)  # (K, B, out)


def num_members(module: nn.Module) -> int:
    return next(module.parameters()).shape[0]


def member_state_dict(module: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Member k's parameters as a plain state_dict (names and shapes of the unstacked layers)."""
    state = {}
    for name, tensor in module.state_dict().items():
        member = tensor[k].detach()
        if name.endswith("weight") and _is_ensemble_linear(module, name):
            member = member.t()  # (in, out) -> nn.Linear's (out, in)
        state[name] = member.contiguous().clone().cpu()
    return state


def load_member_state_dict(module: nn.Module, k: int, state: dict[str, torch.Tensor]) -> None:
    """Copy a plain state_dict into member k; names and shapes must match exactly."""
    own = module.state_dict()
    if set(own) != set(state):
        raise ValueError(f"keys differ: missing {sorted(set(own) - set(state))}, unexpected {sorted(set(state) - set(own))}")
    converted = {}
    for name, tensor in state.items():
        if name.endswith("weight") and _is_ensemble_linear(module, name):
            tensor = tensor.t()
        if own[name].shape[1:] != tensor.shape:
            expected = own[name].shape[1:]
            if name.endswith("weight") and _is_ensemble_linear(module, name):
                expected, tensor = expected[::-1], tensor.t()
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")
        converted[name] = tensor
    with torch.no_grad():
        for name, tensor in converted.items():
            own[name][k].copy_(tensor)


def _is_ensemble_linear(module: nn.Module, parameter_name: str) -> bool:
    owner = module.get_submodule(parameter_name.rpartition(".")[0]) if "." in parameter_name else module
    return isinstance(owner, EnsembleLinear)
