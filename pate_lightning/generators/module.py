"""``TeacherVAEModule``: trains the VAEs of one or more teachers, stacked, in one optimizer step."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from pate_lightning.generators.families import FAMILIES, load_public_vae
from pate_lightning.generators.decoders import build_vae
from pate_lightning.generators.vae import reset_members
from pate_lightning.counter_streams import TeacherStreams, normal
from pate_lightning.stacked.module import StackedTeacherModule
from pate_lightning.seeding import Stream
from pate_lightning.seeding import generator as stream_generator

NUM_CLASSES = 10


class TeacherVAEModule(StackedTeacherModule):
    """VAE per teacher: loss = reconstruction + beta * KL, per teacher, summed over teachers.

    Teachers never share weights: each is slice k of the stacked layers, and Adam acts
    elementwise, so teacher k trained beside others follows the same path as trained alone.

    Args:
        teacher_ids: the teachers this module trains (set by the runner; default ``[0]``).
        latent_dim: size of the latent space (the guide's default 32).
        hidden_dims: widths of the encoder's hidden layers (the decoder mirrors them); conv: the fc width.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        seed: base seed; teacher k's initial weights and reparameterization noise derive from (seed, k).
        conditional: the label's one-hot goes into encoder and decoder (generation then asks per class).
        architecture: ``mlp`` or ``conv`` (no BatchNorm either way).
        generator: the family: ``per_teacher`` (from scratch on the shard), ``public`` (every teacher
            takes the public VAE as is; the shard is never read), ``hybrid`` (the public VAE fine-tuned
            on the shard).
        public_vae: the public VAE's ``vae_full.pth`` (``public`` and ``hybrid``), e.g. trained by
            ``fit --config configs/generators/public_prior.yaml`` on ``font_digits``.
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
        conditional: bool = False,
        architecture: str = "mlp",
        generator: str = "per_teacher",
        public_vae: Optional[str] = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or not hidden_dims or min(hidden_dims) < 1:
            raise ValueError(f"latent_dim and hidden_dims must be positive, got {latent_dim}, {hidden_dims}")
        if generator not in FAMILIES:
            raise ValueError(f"unknown generator {generator!r}; choose one of {list(FAMILIES)}")
        self.save_hyperparameters()
        self.teacher_ids = list(teacher_ids) if teacher_ids is not None else [0]
        k = len(self.teacher_ids)
        self.num_classes = NUM_CLASSES if conditional else 0
        self.encoder, self.decoder = build_vae(architecture, k, latent_dim, hidden_dims, self.num_classes)
        if generator == "per_teacher":
            init = [stream_generator(seed, t, Stream.INIT) for t in self.teacher_ids]
            reset_members(self.encoder, init)
            reset_members(self.decoder, init)
        else:
            load_public_vae(public_vae, generator, self.encoder, self.decoder, k)
        self.noise = TeacherStreams(seed, self.teacher_ids, Stream.NOISE)
        self.beta = 1.0  # set each epoch by the KLAnnealing callback
        self._init_epoch_sums()

    def encode(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(images, labels)  # images (K, B, 1, 28, 28) -> (K, B, latent) each

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Deterministic reconstruction: decode the posterior mean."""
        mu, _ = self.encode(images, labels)
        return self.decoder(mu, labels).view_as(images)

    def sample(self, count: int, generators: list[torch.Generator], labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``count`` images per teacher from the prior: (K, count, 1, 28, 28); ``labels`` (K, count) if conditional."""
        z = torch.stack([torch.randn(count, self.hparams.latent_dim, generator=g) for g in generators])
        labels = None if labels is None else labels.to(self.device)
        return self.decoder(z.to(self.device), labels).view(len(generators), count, 1, 28, 28)

    def _draw_noise(self, shape: torch.Size) -> torch.Tensor:
        """Reparameterization noise (K, B, latent) of every teacher in one draw on the device. Record b's noise
        depends only on (seed, teacher, step, b), so a Poisson batch padded to another teacher's size never
        shifts a teacher's noise and the batch's mask is never read back to the host."""
        return normal(self.noise.on(self.device), self.noise.next_counter(), shape[1:])

    def per_sample_losses(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and KL of every example: each (K, B); a DP-SGD subclass clips per example from these."""
        x = images.flatten(2)  # (K, B, 784)
        cond = labels if self.num_classes else None
        mu, logvar = self.encoder(images, cond)
        z = mu + torch.exp(0.5 * logvar) * self._draw_noise(mu.shape)
        logits = self.decoder.logits(z, cond)  # (K, B, 784)
        # summed over pixels / latent dims (STYLE 4); the batch mean is the caller's
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)  # (K, B)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)  # (K, B)
        return recon, kl

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-teacher losses (K,) = batch mean of recon + beta * KL, and their parts (K,) each."""
        images, labels = batch
        recon, kl = self.per_sample_losses(images, labels)
        recon, kl = recon.mean(-1), kl.mean(-1)  # (K,)
        return recon + self.beta * kl, {"recon": recon, "kl": kl}

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        per_teacher, parts = self.loss(batch)
        self._accumulate([parts["recon"], parts["kl"], per_teacher], batch[0].shape[1])
        logs = {"recon": parts["recon"].mean(), "kl": parts["kl"].mean(), "loss": per_teacher.mean()}
        return per_teacher.sum(), logs

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Optional[torch.Tensor]:
        if self.hparams.generator == "public":
            return None  # the public VAE is used as trained: no shard batch is read, no step taken
        return super().training_step(batch, batch_idx)

    def epoch_metrics(self) -> dict[str, torch.Tensor]:
        beta = torch.full((len(self.teacher_ids),), float(self.beta))
        return {**super().epoch_metrics(), "beta": beta}
