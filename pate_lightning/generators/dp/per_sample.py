"""Per-sample clipped gradients of stacked linear layers, for every teacher of a stack at once.

For ``y = x W + b`` on one sample, the weight gradient is the outer product ``x^T g`` (g = dL/dy), so
its squared norm is ``|x|^2 |g|^2`` and the bias gradient is ``g`` (Goodfellow 2015; the "ghost norm"
of Li et al. 2022). One forward records each trainable layer's input x (K, B, in) and output; one
``autograd.grad`` of the summed per-sample losses gives every g (K, B, out) without forming any
per-sample gradient; the clipped sum is then ``x^T (c * g)`` with each sample's clip factor c: one
batched matmul per layer, the cost of an ordinary weight gradient. Samples must not interact in the
forward pass (no BatchNorm), and each layer must see one vector per sample (no sequences).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from pate_lightning.stacked.layers import EnsembleLinear

# batch statistics couple the samples of a batch, so one record's influence is not its own gradient
BATCH_COUPLED = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# named subsets of a VAE's parameters (glob patterns over parameter names)
TRAINABLE_PRESETS: dict[str, tuple[str, ...]] = {
    "all": ("*",),
    "decoder": ("decoder.*",),
    "decoder_last": ("decoder.out.*",),
    "decoder_biases_last": ("decoder.*.bias", "decoder.out.weight"),
}


@dataclass
class TrainableLayer:
    """One stacked layer whose weight and/or bias DP-SGD trains."""

    name: str
    layer: EnsembleLinear
    weight: bool
    bias: bool
    inputs: list[torch.Tensor] = field(default_factory=list)  # (K, B, in), detached
    outputs: list[torch.Tensor] = field(default_factory=list)  # (K, B, out), in the graph

    def parameters(self) -> Iterator[nn.Parameter]:
        if self.weight:
            yield self.layer.weight
        if self.bias:
            yield self.layer.bias


def check_dp_compatible(module: nn.Module) -> None:
    """Refuse modules whose per-sample gradients are not separable (BatchNorm)."""
    for name, sub in module.named_modules():
        if isinstance(sub, BATCH_COUPLED):
            raise ValueError(
                f"DP-SGD cannot train {type(module).__name__}: its layer {name!r} is a {type(sub).__name__}, whose "
                "batch statistics mix the records of a batch, so one record's influence on a step is no longer its "
                "own clipped gradient and the privacy accounting would not hold. Use a model without BatchNorm "
                "(GroupNorm/LayerNorm/InstanceNorm act per sample) or train without DP."
            )


def select_trainable(module: nn.Module, trainable: tuple[str, ...]) -> list[TrainableLayer]:
    """The layers holding parameters named by ``trainable`` (preset names or globs); freezes the rest.

    >>> from pate_lightning.generators.vae import Decoder
    >>> [(t.name, t.weight, t.bias) for t in select_trainable(Decoder(2, 4, (8,)), ("out.*",))]
    [('out', True, True)]
    """
    patterns = [p for entry in trainable for p in TRAINABLE_PRESETS.get(entry, (entry,))]
    chosen = {name for name, _ in module.named_parameters() if any(fnmatch.fnmatchcase(name, p) for p in patterns)}
    if not chosen:
        names = [name for name, _ in module.named_parameters()]
        raise ValueError(
            f"DP-SGD trainable {list(trainable)} matches no parameter of {type(module).__name__}; use a preset "
            f"({', '.join(TRAINABLE_PRESETS)}) or glob patterns over its parameter names (e.g. {names[:3]})."
        )
    layers = []
    for owner_name, owner in module.named_modules():
        if isinstance(owner, EnsembleLinear):
            weight, bias = f"{owner_name}.weight" in chosen, f"{owner_name}.bias" in chosen
            if weight or bias:
                layers.append(TrainableLayer(owner_name, owner, weight, bias))
    covered = {f"{entry.name}.{kind}" for entry in layers for kind in ("weight", "bias")}
    if chosen - covered:
        raise ValueError(
            f"DP-SGD computes per-sample gradients of stacked linear layers (EnsembleLinear) only; trainable "
            f"parameters {sorted(chosen - covered)} belong to other layers. Leave them out of `trainable`."
        )
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name in chosen)
    return layers


class Recorder:
    """Context manager: records the inputs and outputs of ``layers`` during one forward pass."""

    def __init__(self, layers: list[TrainableLayer]) -> None:
        self.layers = layers
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "Recorder":
        for entry in self.layers:
            entry.inputs.clear()
            entry.outputs.clear()

            def hook(_: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor, entry=entry) -> None:
                if entry.outputs:
                    raise RuntimeError(f"layer {entry.name!r} ran twice in one DP-SGD step; per-sample norms assume once")
                entry.inputs.append(args[0].detach())
                entry.outputs.append(output)

            self.handles.append(entry.layer.register_forward_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def clip_factors(squared_norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """min(1, C / |g|) per sample (opacus' form, with its 1e-6 guard).

    >>> clip_factors(torch.tensor([[4.0, 0.25]]), 1.0)
    tensor([[0.5000, 1.0000]])
    """
    return (max_grad_norm / (squared_norms.sqrt() + 1e-6)).clamp(max=1.0)


def clipped_gradients(
    layers: list[TrainableLayer], summed_loss: torch.Tensor, mask: torch.Tensor, max_grad_norm: float
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Sum over each teacher's samples of the clipped per-sample gradients, one tensor per trainable parameter.

    ``summed_loss`` is the sum of the per-sample losses of all teachers, padded slots multiplied by 0;
    returns the gradients (each (K, ...) like its parameter, in ``parameters()`` order) and the
    per-sample gradient norms (K, B) before clipping.
    """
    outputs = [entry.outputs[0] for entry in layers]
    grads = torch.autograd.grad(summed_loss, outputs)  # dL/dy per layer: (K, B, out), one row per sample
    squared = torch.zeros(mask.shape, device=summed_loss.device)  # (K, B)
    for entry, g in zip(layers, grads):
        g_sq = g.pow(2).sum(-1)  # (K, B)
        if entry.weight:
            squared = squared + entry.inputs[0].pow(2).sum(-1) * g_sq
        if entry.bias:
            squared = squared + g_sq
    factors = clip_factors(squared, max_grad_norm) * mask  # (K, B); padded slots count 0
    clipped = []
    for entry, g in zip(layers, grads):
        scaled = g * factors.unsqueeze(-1)  # (K, B, out)
        if entry.weight:
            clipped.append(torch.bmm(entry.inputs[0].transpose(1, 2), scaled))  # (K, in, out), the weight's layout
        if entry.bias:
            clipped.append(scaled.sum(1))  # (K, out)
    for entry in layers:
        entry.inputs.clear()
        entry.outputs.clear()
    return clipped, squared.sqrt()
