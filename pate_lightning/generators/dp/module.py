"""``DPTeacherVAEModule``: the per-teacher VAEs trained with DP-SGD, every teacher of a stack at once.

Per step and teacher (Abadi et al. 2016): a Poisson sample of its shard (``PoissonShardDataModule``),
each record's gradient over the teacher's trainable parameters clipped to ``max_grad_norm``, their sum
plus Gaussian noise of std ``noise_multiplier * max_grad_norm`` (``StepNoise``: drawn on the device,
one draw for the whole stack in a private run), divided by the expected batch size, then Adam
(post-processing). Teachers never share a step's data, clip or noise, so in a seeded run teacher k
trained in a stack follows the path it follows alone.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import torch

from pate_lightning.data.poisson import PoissonShardDataModule, steps_per_epoch
from pate_lightning.generators.dp.noise import StepNoise
from pate_lightning.generators.dp.per_sample import Recorder, check_dp_compatible, clipped_gradients, select_trainable
from pate_lightning.generators.module import TeacherVAEModule
from pate_lightning.privacy.dp_sgd_accounting import (
    check_resume_noise, dp_sgd_epsilon, dp_sgd_privacy_entry, solve_noise_multiplier,
)

log = logging.getLogger(__name__)

CONVERSION = "balle2020"  # Balle et al. 2020, Thm. 21: dp-accounting's and opacus' conversion


def check_dp_settings(
    noise_multiplier: Optional[float], target_epsilon: Optional[float], max_grad_norm: float, delta: float
) -> None:
    """One-paragraph errors for DP-SGD settings that cannot give a guarantee."""
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError(
            "DP-SGD needs exactly one of noise_multiplier (the Gaussian noise's std in units of max_grad_norm) and "
            f"target_epsilon (the noise is then solved for it); got noise_multiplier={noise_multiplier!r}, "
            f"target_epsilon={target_epsilon!r}."
        )
    for name, value in (("noise_multiplier", noise_multiplier), ("target_epsilon", target_epsilon), ("max_grad_norm", max_grad_norm)):
        if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ValueError(
                f"DP-SGD {name} must be a finite number > 0, got {value!r}: with no noise or no clipping a "
                "record's influence on a step is unbounded and there is no privacy guarantee to account."
            )
    if not (isinstance(delta, float) and 0 < delta < 1):
        raise ValueError(f"DP-SGD delta must lie in (0, 1) (typically below 1 / shard size), got {delta!r}.")


class DPTeacherVAEModule(TeacherVAEModule):
    """``TeacherVAEModule`` trained with DP-SGD; needs ``PoissonShardDataModule`` batches.

    Args:
        (TeacherVAEModule's, then:)
        noise_multiplier: noise std / max_grad_norm; or leave None and give ``target_epsilon``.
        target_epsilon: per-teacher epsilon at ``delta`` to reach after the planned steps (max_epochs or max_steps).
        max_grad_norm: per-sample clipping norm over the teacher's trainable parameters.
        delta: the delta of the reported epsilon.
        trainable: parameters DP-SGD trains (the rest stay at their initial or loaded values): presets
            ``all``, ``decoder``, ``decoder_last``, ``decoder_biases_last``, or glob patterns over names.
        noise_seed: None (a private run): noise from OS entropy. A seed: teacher k's ``(noise_seed, k)``
            stream, for tests and replication (the run is then NOT private).
        conditional, generator, public_vae: as ``TeacherVAEModule``; ``generator: hybrid`` fine-tunes the
            public VAE on each shard under DP-SGD.
    """

    def __init__(
        self,
        teacher_ids: Optional[list[int]] = None,
        latent_dim: int = 32,
        hidden_dims: tuple[int, ...] = (512, 256),
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        seed: int = 42,
        noise_multiplier: Optional[float] = None,
        target_epsilon: Optional[float] = None,
        max_grad_norm: float = 1.0,
        delta: float = 1e-5,
        trainable: tuple[str, ...] = ("all",),
        noise_seed: Optional[int] = None,
        conditional: bool = False,
        generator: str = "per_teacher",
        public_vae: Optional[str] = None,
    ) -> None:
        check_dp_settings(noise_multiplier, target_epsilon, max_grad_norm, delta)
        # the MLP only: per-sample norms are computed for stacked linear layers (conv is refused)
        super().__init__(teacher_ids, latent_dim, hidden_dims, lr, weight_decay, seed, conditional=conditional,
                         architecture="mlp", generator=generator, public_vae=public_vae)
        self.save_hyperparameters()
        self.automatic_optimization = False
        check_dp_compatible(self)
        self.dp_layers = select_trainable(self, tuple(trainable))
        # keyed by (key, step): no generator state to checkpoint, and the private key is kept nowhere
        self.dp_noise = StepNoise(noise_seed, self.teacher_ids)
        self.register_buffer("dp_steps", torch.zeros((), dtype=torch.long))  # steps taken: the accountant's count
        self._noise_step = 0  # dp_steps on the host, read once per fit (on_train_start), so a step never syncs
        self.shard_size: Optional[int] = None
        self.sample_rate: Optional[float] = None  # set in setup from the datamodule
        self.expected_batch_size: Optional[float] = None
        self.sampling_seed: Optional[int] = None
        self.sigma = noise_multiplier

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for entry in self.dp_layers for p in entry.parameters()]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.trainable_parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=True
        )

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        check_dp_compatible(self)  # again: layers may have been changed since __init__
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, PoissonShardDataModule):
            raise ValueError(
                f"DP-SGD needs Poisson sampling (pate_lightning.data.poisson.PoissonShardDataModule), got "
                f"{type(datamodule).__name__}: the accountant's subsampled-Gaussian bound assumes every record joins "
                "each batch independently, and shuffled fixed-size batches do not give that amplification. "
                "Set data.class_path to PoissonShardDataModule (see configs/teacher_vae_dp.yaml)."
            )
        self.sample_rate = datamodule.group_sample_rate()
        self.shard_size = len(datamodule.shards[self.teacher_ids[0]])
        self.expected_batch_size = self.sample_rate * self.shard_size
        self.sampling_seed = datamodule.hparams.sampling_seed
        planned = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.max_epochs * steps_per_epoch(self.sample_rate)
        if planned < 1:
            raise ValueError(
                "DP-SGD needs a finite number of steps to account for: set trainer.max_epochs or trainer.max_steps "
                f"(got max_epochs={self.trainer.max_epochs}, max_steps={self.trainer.max_steps})."
            )
        if self.hparams.target_epsilon is not None:
            self.sigma = solve_noise_multiplier(
                self.hparams.target_epsilon, self.hparams.delta, self.sample_rate, planned, CONVERSION
            )
        eps, _ = dp_sgd_epsilon(self.sigma, self.sample_rate, planned, self.hparams.delta, CONVERSION)
        log.info("[dp-sgd] teachers %s: sample rate %.4g, noise %.4g, %d steps planned, epsilon %.3g at delta %g",
                 self.teacher_ids, self.sample_rate, self.sigma, planned, eps, self.hparams.delta)

    def _noise_settings(self) -> dict[str, float]:
        return {"noise_multiplier": self.sigma, "sample_rate": self.sample_rate, "max_grad_norm": self.hparams.max_grad_norm}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["dp_sgd_noise"] = self._noise_settings()  # what the steps so far were charged at

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # runs after setup, so self.sigma is this run's (re-solved for target_epsilon)
        steps = int(checkpoint.get("state_dict", {}).get("dp_steps", 0))
        check_resume_noise(checkpoint.get("dp_sgd_noise", {}), self._noise_settings(), steps)
        super().on_load_checkpoint(checkpoint)

    def on_train_start(self) -> None:
        self._noise_step = int(self.dp_steps)  # restored from a checkpoint by now

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 3):
            raise ValueError("DP-SGD batches are (images, labels, mask) from PoissonShardDataModule; got another loader's")
        images, labels, mask = batch
        weights = mask.to(images.dtype)  # (K, B); 0 on padded slots
        with Recorder(self.dp_layers):
            recon, kl = self.per_sample_losses(images, labels)
            per_sample = recon + self.beta * kl  # (K, B)
        clipped, _ = clipped_gradients(self.dp_layers, (per_sample * weights).sum(), weights, self.hparams.max_grad_norm)
        optimizer = self.optimizers()
        for parameter, grad in zip(self.trainable_parameters(), self._privatize(clipped)):
            parameter.grad = grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.dp_steps += 1
        self._noise_step += 1
        self._accumulate_masked([recon.detach(), kl.detach(), per_sample.detach()], weights)
        count = weights.sum().clamp(min=1)
        logs = {"recon": (recon * weights).sum() / count, "kl": (kl * weights).sum() / count}
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, prog_bar=True)
        return (per_sample * weights).sum().detach() / count

    @torch.no_grad()
    def _privatize(self, clipped: list[torch.Tensor]) -> list[torch.Tensor]:
        """(clipped sum + N(0, (sigma C)^2)) / expected batch size, per teacher (Abadi et al. 2016, Alg. 1), in place.

        The noise of all teachers and parameters is one (K, P) draw on the device (``StepNoise``); it is
        most of a DP step's extra cost on a CPU (~1.1M normals per teacher and step for the default VAE).
        """
        std = self.sigma * self.hparams.max_grad_norm
        sizes = [grad[0].numel() for grad in clipped]
        noise = self.dp_noise.draw(self._noise_step, sum(sizes), clipped[0].device)  # (K, P)
        for grad, part in zip(clipped, noise.split(sizes, dim=1)):
            grad.add_(part.view_as(grad), alpha=std).div_(self.expected_batch_size)
        return clipped

    @torch.no_grad()
    def _accumulate_masked(self, values: list[torch.Tensor], weights: torch.Tensor) -> None:
        sums = [(v * weights).sum(1) for v in values] + [weights.sum(1)]
        self.epoch_sums += torch.stack(sums, 1)  # (K, M + 1)

    def report_extras(self, k: int) -> dict[str, Any]:
        """``training_report.json``'s DP-SGD settings, the teacher's epsilon and its privacy-contract entry."""
        steps, delta = int(self.dp_steps), self.hparams.delta
        private = self.hparams.noise_seed is None and self.sampling_seed is None
        randomness = "noise and Poisson sampling from OS entropy (no seed recorded)" if private else (
            f"noise_seed={self.hparams.noise_seed}, sampling_seed={self.sampling_seed}: seeded, reproducible, NOT PRIVATE")
        epsilon = {c: dp_sgd_epsilon(self.sigma, self.sample_rate, steps, delta, c)[0] for c in ("balle2020", "classic")}
        note = (f"DP-SGD per teacher: Poisson rate {self.sample_rate:.4g}, noise multiplier {self.sigma:.4g}, clip "
                f"{self.hparams.max_grad_norm}, {steps} steps: epsilon {epsilon[CONVERSION]:.3g} at delta {delta:g} "
                f"({CONVERSION}); {randomness}")
        return {
            "dp_sgd": {
                "noise_multiplier": self.sigma,
                "noise_multiplier_solved_for_target_epsilon": self.hparams.target_epsilon,
                "max_grad_norm": self.hparams.max_grad_norm,
                "sample_rate": self.sample_rate,
                "expected_batch_size": self.expected_batch_size,
                "steps": steps,
                "trainable": list(self.hparams.trainable),
                "trainable_parameters_per_teacher": sum(p[k].numel() for p in self.trainable_parameters()),
                "epsilon": {
                    "value": epsilon[CONVERSION], "delta": delta, "conversion": CONVERSION,
                    "value_classic_conversion": epsilon["classic"],
                    "accountant": "dp-accounting RdpAccountant: PoissonSampledDpEvent(GaussianDpEvent), add/remove one record",
                    "orders": "pate_lightning.privacy.analysis.DEFAULT_ORDERS",
                    "scope": "this teacher's generator training on its own shard; teachers' shards are disjoint (parallel composition)",
                },
                "private": private,
                "randomness": randomness,
                "history_note": "the loss history is measured on the private shard without noise: not covered by epsilon",
            },
            # the family's name (per_teacher or hybrid), so the ledger says which generator paid
            "privacy": dp_sgd_privacy_entry(self.sigma, self.sample_rate, steps, self.hparams.generator, note,
                                            seeded=not private),
        }
