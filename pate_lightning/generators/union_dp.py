"""One conditional VAE fine-tuned by DP-SGD over the union of all teachers' shards, through opacus.

The shards partition one sensitive dataset, so one model can Poisson-sample records from all of them and add
Gaussian noise once per step: the noise is divided by a batch hundreds of times larger than a shard's. opacus
makes the model private (``PrivacyEngine``: per-example gradients by ``GradSampleModule``, clipping and noise by
``DPOptimizer``, Poisson batches by its ``DPDataLoader``) and calibrates the noise with its RDP accountant. The
stacked ``EnsembleLinear`` layers have no opacus grad sampler, so the shared model is a plain ``nn.Linear`` MLP
whose state_dict names and shapes are one stacked member's: it loads the public prior's ``vae_full.pth`` and
writes files every generator reader already takes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from pate_lightning.baselines.dp_sgd_student import make_private
from pate_lightning.generators.vae import IMAGE_SIZE

log = logging.getLogger(__name__)

TRAINABLE = ("all", "decoder")  # decoder: the public encoder stays fixed (fewer noised coordinates)


@dataclass(frozen=True)
class UnionDPSettings:
    """DP-SGD of the shared generator over the union of the shards.

    Args:
        target_epsilon: the epsilon opacus calibrates the noise for, at ``delta`` (the generator's share).
        delta: the delta of the (epsilon, delta) guarantee.
        epochs: passes over the records (steps = epochs / sample rate).
        batch_size: expected batch of the Poisson sampling (sample rate = batch_size / records).
        max_grad_norm: per-example clipping norm.
        lr: Adam learning rate.
        trainable: ``all`` (encoder and decoder) or ``decoder`` (the public encoder fixed).
    """

    target_epsilon: float = 3.0
    delta: float = 1e-5
    epochs: int = 3
    batch_size: int = 500
    max_grad_norm: float = 1.0
    lr: float = 1e-3
    trainable: str = "all"

    def check(self) -> "UnionDPSettings":
        if self.trainable not in TRAINABLE:
            raise ValueError(f"unknown trainable {self.trainable!r}; choose one of {list(TRAINABLE)}")
        if not (self.target_epsilon > 0 and 0 < self.delta < 1):
            raise ValueError(f"union DP-SGD needs target_epsilon > 0 and delta in (0, 1), got "
                             f"{self.target_epsilon}, {self.delta}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_grad_norm <= 0 or self.lr <= 0:
            raise ValueError("union DP-SGD needs epochs >= 1, batch_size >= 1, max_grad_norm > 0 and lr > 0, got "
                             f"{self.epochs}, {self.batch_size}, {self.max_grad_norm}, {self.lr}")
        return self


class PlainMLP(nn.Module):
    """``hidden.{i}`` then named heads, ReLU between: one stacked ``vae.Encoder``/``Decoder`` member, unstacked.

    Args:
        in_features: input width (image or latent, plus the one-hot label).
        hidden_dims: hidden widths.
        heads: name -> output width (``mu``/``logvar`` for the encoder, ``out`` for the decoder).
        num_classes: the conditioning classes (kept as the ``conditional_classes`` entry the files carry).
    """

    def __init__(self, in_features: int, hidden_dims: Sequence[int], heads: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("conditional_classes", torch.tensor(num_classes, dtype=torch.long))
        sizes = [in_features, *hidden_dims]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.heads = list(heads)
        for name, width in heads.items():
            self.add_module(name, nn.Linear(sizes[-1], width))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        x = torch.cat([x, F.one_hot(labels, self.num_classes).to(x.dtype)], -1)  # (B, in)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return [getattr(self, name)(x) for name in self.heads]


class UnionCVAE(nn.Module):
    """A conditional MLP VAE whose ``forward`` is the per-example loss (B,): what opacus clips, one row a record.

    Args:
        latent_dim: latent size.
        hidden_dims: hidden widths of encoder and decoder alike (as ``generators/vae.py`` builds them).
        num_classes: conditioning classes.
    """

    def __init__(self, latent_dim: int, hidden_dims: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = PlainMLP(IMAGE_SIZE + num_classes, hidden_dims, {"mu": latent_dim, "logvar": latent_dim},
                                num_classes)
        self.decoder = PlainMLP(latent_dim + num_classes, hidden_dims, {"out": IMAGE_SIZE}, num_classes)

    @classmethod
    def from_vae_full(cls, state: dict[str, torch.Tensor]) -> "UnionCVAE":
        """The model of a conditional MLP ``vae_full.pth`` (sizes read from its weights), loaded strictly."""
        count = sum(1 for key in state if key.startswith("encoder.hidden.") and key.endswith(".weight"))
        if "encoder.conditional_classes" not in state or count == 0:
            raise ValueError("the union generator starts from a conditional MLP VAE (vae_full.pth with "
                             "encoder.conditional_classes and encoder.hidden.*); got another kind")
        hidden = [int(state[f"encoder.hidden.{i}.weight"].shape[0]) for i in range(count)]
        model = cls(int(state["encoder.mu.weight"].shape[0]), hidden, int(state["encoder.conditional_classes"]))
        model.load_state_dict(state, strict=True)
        return model

    def forward(self, images: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1)  # (B, 784)
        mu, logvar = self.encoder(x, labels)  # (B, latent) each
        logits, = self.decoder(mu + torch.exp(0.5 * logvar) * noise, labels)  # (B, 784)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # (B,)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)  # (B,)
        return recon + kl

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images (N, 1, 28, 28) in [0, 1] for the classes ``labels`` (N,), latents from ``generator``."""
        z = torch.randn(len(labels), self.latent_dim, generator=generator)
        logits, = self.decoder(z.to(labels.device), labels)
        return torch.sigmoid(logits).view(-1, 1, 28, 28)


@dataclass(frozen=True)
class UnionDPResult:
    """What one union DP-SGD run spent.

    Args:
        model: the fine-tuned (unwrapped) generator.
        epsilon: opacus's RDP accountant's epsilon at the settings' delta.
        noise_multiplier: the noise opacus calibrated.
        sample_rate: the Poisson sampling rate.
        steps: optimizer steps taken (noise drawn once per step).
    """

    model: UnionCVAE
    epsilon: float
    noise_multiplier: float
    sample_rate: float
    steps: int


def train_union_dp(
    model: UnionCVAE, images: torch.Tensor, labels: torch.Tensor, settings: UnionDPSettings,
    noise: torch.Generator, sampling: torch.Generator, reparameterization: torch.Generator,
    device: torch.device = torch.device("cpu"),
) -> UnionDPResult:
    """Fine-tune ``model`` on ``images`` (N, 1, 28, 28) in [0, 1] and ``labels`` (N,) by DP-SGD with opacus.

    ``noise`` draws the Gaussian noise, ``sampling`` keys the Poisson batches (both privacy randomness: from OS
    entropy in a private run), ``reparameterization`` the VAE's latent draws (not privacy noise).
    """
    settings.check()
    if settings.trainable == "decoder":
        model.encoder.requires_grad_(False)
    model = model.to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    engine, private_model, optimizer, private_loader = make_private(
        model, optimizer, TensorDataset(images, labels), settings, noise, sampling)
    steps = 0
    private_model.train()
    for epoch in range(settings.epochs):
        for batch_images, batch_labels in private_loader:
            optimizer.zero_grad(set_to_none=True)
            draws = torch.randn(len(batch_labels), model.latent_dim, generator=reparameterization)  # (B, latent)
            per_example = private_model(batch_images.to(device), batch_labels.to(device), draws.to(device))
            # sum / n, not mean(): an empty Poisson batch still steps (the noise alone, as the accountant counts)
            (per_example.sum() / max(1, len(batch_labels))).backward()
            optimizer.step()
            steps += 1
        # no loss is logged: it is computed from the private records without noise
        log.info("union_dp: epoch %d/%d, steps %d", epoch + 1, settings.epochs, steps)
    return UnionDPResult(private_model._module, float(engine.get_epsilon(settings.delta)),
                         float(optimizer.noise_multiplier), float(private_loader.sample_rate), steps)


def class_conditional_samples(
    model: UnionCVAE, per_class: int, generator: torch.Generator, num_classes: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of every class, with the class asked for as the label: (N, 1, 28, 28), (N,)."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    model.eval()
    images = torch.cat([model.sample(chunk, generator) for chunk in labels.split(1000)])
    return images.cpu(), labels


__all__ = ["PlainMLP", "TRAINABLE", "UnionCVAE", "UnionDPResult", "UnionDPSettings", "class_conditional_samples",
           "train_union_dp"]
