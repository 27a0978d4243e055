"""The student architecture trained directly on the union of the teachers' shards with DP-SGD, through opacus.

opacus makes the model private (``PrivacyEngine.make_private_with_epsilon``: per-example gradients by
``GradSampleModule``, clipping, Gaussian noise, Poisson sampling) and calibrates the noise with its RDP
accountant. opacus drives its own optimizer, so this is a plain PyTorch loop rather than a Trainer. The noise
generator is the package's (``privacy.noise``): a torch generator seeded from OS entropy unless a seed is asked
for, as PATE's vote noise. opacus's ``secure_mode`` (a cryptographic generator from torchcsprng and a defence
against floating-point attacks on Gaussian sampling) is not used, as it is not for the votes either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from pate_lightning.classifiers.loading import NORMALIZATIONS
from pate_lightning.pate.student_nets import ARCHITECTURES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPSGDSettings:
    """DP-SGD on the union of the shards.

    Args:
        target_epsilon: the epsilon opacus calibrates the noise for, at ``delta``.
        delta: the delta of the (epsilon, delta) guarantee.
        epochs: passes over the records (steps = epochs / sample rate).
        batch_size: expected batch of the Poisson sampling (sample rate = batch_size / records).
        max_grad_norm: per-example clipping norm.
        lr: SGD learning rate.
        momentum: SGD momentum.
        architecture: one of ``pate.student_nets.ARCHITECTURES``; batch norm becomes group norm (opacus's
            ``ModuleValidator.fix``: per-example gradients need layers that do not mix examples).
        normalization: the student's input normalization (``mnist`` or ``half``).
    """

    target_epsilon: float = 1.0
    delta: float = 1e-5
    epochs: int = 15
    batch_size: int = 256
    max_grad_norm: float = 1.0
    lr: float = 0.5
    momentum: float = 0.0
    architecture: str = "small_cnn"
    normalization: str = "mnist"

    def check(self) -> "DPSGDSettings":
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; choose one of {sorted(ARCHITECTURES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; choose one of {sorted(NORMALIZATIONS)}")
        if not (self.target_epsilon > 0 and 0 < self.delta < 1):
            raise ValueError(f"DP-SGD needs target_epsilon > 0 and delta in (0, 1), got {self.target_epsilon}, {self.delta}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_grad_norm <= 0 or self.lr <= 0:
            raise ValueError("DP-SGD needs epochs >= 1, batch_size >= 1, max_grad_norm > 0 and lr > 0, got "
                             f"{self.epochs}, {self.batch_size}, {self.max_grad_norm}, {self.lr}")
        return self


@dataclass(frozen=True)
class DPSGDResult:
    """What one DP-SGD run spent and reached.

    Args:
        model: the trained (unwrapped) student.
        epsilon: opacus's RDP accountant's epsilon at ``delta`` after training.
        noise_multiplier: the noise opacus calibrated.
        sample_rate: the Poisson sampling rate.
        steps: optimizer steps taken.
    """

    model: torch.nn.Module
    epsilon: float
    noise_multiplier: float
    sample_rate: float
    steps: int


def make_private(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset: TensorDataset, settings: Any,
    noise: torch.Generator, sampling: torch.Generator,
) -> tuple[Any, torch.nn.Module, Any, DataLoader]:
    """opacus's (engine, private model, DP optimizer, Poisson loader) at ``settings``' target epsilon.

    ``settings`` has ``target_epsilon``, ``delta``, ``epochs``, ``batch_size`` (the expected Poisson batch) and
    ``max_grad_norm``. ``noise`` draws the Gaussian noise; ``sampling`` keys the Poisson batches.
    """
    from opacus import PrivacyEngine

    # opacus draws its Poisson batches from the global generator (its own generator only in secure_mode); the
    # subsampling's amplification holds only if nobody can predict the batches, so in a private run that
    # generator's whole state comes from ``sampling`` (keyed from OS entropy), never from a recorded seed
    torch.default_generator.set_state(sampling.get_state())
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True)
    engine = PrivacyEngine(accountant="rdp")
    private_model, optimizer, private_loader = engine.make_private_with_epsilon(
        module=model, optimizer=optimizer, data_loader=loader, target_epsilon=settings.target_epsilon,
        target_delta=settings.delta, epochs=settings.epochs, max_grad_norm=settings.max_grad_norm,
        noise_generator=noise,
    )
    return engine, private_model, optimizer, private_loader


def train_dp_sgd(
    images: torch.Tensor, labels: torch.Tensor, settings: DPSGDSettings, noise: torch.Generator,
    init_seed: int, device: torch.device, sampling: torch.Generator,
) -> DPSGDResult:
    """Train ``settings.architecture`` on ``images`` (N, 1, 28, 28) in [0, 1] and ``labels`` (N,) under DP-SGD."""
    from opacus.validators import ModuleValidator

    settings.check()
    torch.manual_seed(init_seed)  # the initial weights: not privacy noise
    model = ModuleValidator.fix(ARCHITECTURES[settings.architecture]()).to(device)
    normalize = NORMALIZATIONS[settings.normalization]
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    engine, private_model, optimizer, private_loader = make_private(
        model, optimizer, TensorDataset(normalize(images), labels), settings, noise, sampling)
    steps = 0
    private_model.train()
    for epoch in range(settings.epochs):
        for batch_images, batch_labels in private_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = F.nll_loss(private_model(batch_images.to(device)), batch_labels.to(device))
            loss.backward()
            optimizer.step()
            steps += 1
        log.info("dp_sgd_student: epoch %d/%d, loss %.3f, epsilon so far %.3f", epoch + 1, settings.epochs,
                 loss.item(), engine.get_epsilon(settings.delta))
    return DPSGDResult(private_model._module, float(engine.get_epsilon(settings.delta)), float(optimizer.noise_multiplier),
                       float(private_loader.sample_rate), steps)


@torch.no_grad()
def accuracy_on(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, normalization: str,
                  device: torch.device) -> float:
    """Accuracy of ``model`` on ``images`` (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    normalize = NORMALIZATIONS[normalization]
    correct = 0
    for start in range(0, len(images), 1000):
        batch = normalize(images[start:start + 1000]).to(device)
        correct += int((model(batch).argmax(dim=1).cpu() == labels[start:start + 1000]).sum())
    return correct / max(1, len(images))


__all__ = ["DPSGDResult", "DPSGDSettings", "accuracy_on", "make_private", "train_dp_sgd"]
