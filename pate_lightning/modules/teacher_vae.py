"""``TeacherVAEModule``: trains the VAEs of one or more teachers, stacked, in one optimizer step."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from pate_lightning.models.vae import Decoder, Encoder, reset_members
from pate_lightning.modules.stacked import StackedTeacherModule
from pate_lightning.seeding import Stream, generator


class TeacherVAEModule(StackedTeacherModule):
    """VAE per teacher: loss = reconstruction + beta * KL, per teacher, summed over teachers.

    Teachers never share weights: each is slice k of the stacked layers, and Adam acts
    elementwise, so teacher k trained beside others follows the same path as trained alone.

    Args:
        teacher_ids: the teachers this module trains (set by the runner; default ``[0]``).
        latent_dim: size of the latent space (the guide's default 32).
        hidden_dims: widths of the encoder's hidden layers (the decoder mirrors them).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        seed: base seed; teacher k's initial weights and reparameterization noise derive from (seed, k).
    """

    stage = "teacher_vae"
    EPOCH_METRICS = ("recon", "kl", "loss")
    GENERATORS = ("noise",)

    def __init__(
        self,
        teacher_ids: Optional[list[int]] = None,
        latent_dim: int = 32,
        hidden_dims: tuple[int, ...] = (512, 256),
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        seed: int = 42,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or not hidden_dims or min(hidden_dims) < 1:
            raise ValueError(f"latent_dim and hidden_dims must be positive, got {latent_dim}, {hidden_dims}")
        self.save_hyperparameters()
        self.teacher_ids = list(teacher_ids) if teacher_ids is not None else [0]
        k = len(self.teacher_ids)
        self.encoder = Encoder(k, latent_dim, hidden_dims)
        self.decoder = Decoder(k, latent_dim, hidden_dims)
        init = [generator(seed, t, Stream.INIT) for t in self.teacher_ids]
        reset_members(self.encoder, init)
        reset_members(self.decoder, init)
        self.noise = [generator(seed, t, Stream.NOISE) for t in self.teacher_ids]
        self.beta = 1.0  # set each epoch by the KLAnnealing callback
        self._init_epoch_sums()

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(images.flatten(2))  # images (K, B, 1, 28, 28) -> (K, B, latent)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction: decode the posterior mean."""
        mu, _ = self.encode(images)
        return self.decoder(mu).view_as(images)

    def sample(self, count: int, generators: list[torch.Generator]) -> torch.Tensor:
        """``count`` images per teacher from the prior: (K, count, 1, 28, 28)."""
        z = torch.stack([torch.randn(count, self.hparams.latent_dim, generator=g) for g in generators])
        return self.decoder(z.to(self.device)).view(len(generators), count, 1, 28, 28)

    def _draw_noise(self, shape: torch.Size) -> torch.Tensor:
        # drawn on the CPU from each teacher's own generator so it is the same on every device
        eps = torch.stack([torch.randn(shape[1:], generator=g) for g in self.noise])  # (K, B, latent)
        return eps.to(self.device)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, _ = batch
        x = images.flatten(2)  # (K, B, 784)
        mu, logvar = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * self._draw_noise(mu.shape)
        logits = self.decoder.logits(z)  # (K, B, 784)
        # summed over pixels / latent dims, averaged over each teacher's batch (STYLE 4)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).mean(-1)  # (K,)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean(-1)  # (K,)
        per_teacher = recon + self.beta * kl  # (K,)
        self._accumulate([recon, kl, per_teacher], x.shape[1])
        logs = {"recon": recon.mean(), "kl": kl.mean(), "loss": per_teacher.mean()}
        return per_teacher.sum(), logs

    def epoch_metrics(self) -> dict[str, torch.Tensor]:
        beta = torch.full((len(self.teacher_ids),), float(self.beta))
        return {**super().epoch_metrics(), "beta": beta}
