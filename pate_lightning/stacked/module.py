"""What every stacked-teacher training module shares: the step hook, per-teacher epoch means, Adam."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule


class StackedTeacherModule(LightningModule):
    """Base of modules that train K teachers at once; subclasses define ``_shared_step``.

    ``_shared_step`` returns the summed loss, the batch-mean logs, and calls
    ``_accumulate`` with the per-teacher (K,) values named in ``EPOCH_METRICS``;
    ``epoch_metrics()`` then gives their per-teacher means over the epoch for ``TeacherExport``.
    """

    EPOCH_METRICS: tuple[str, ...] = ()
    # attributes holding a TeacherStreams (per-teacher keys, one draw counter for the stack); the counters
    # are saved in checkpoints so a resumed group draws the same noise as one that never stopped
    GENERATORS: tuple[str, ...] = ()
    teacher_ids: list[int]

    def _init_epoch_sums(self) -> None:
        # one column per metric plus the example count; not saved in checkpoints
        self.register_buffer("epoch_sums", torch.zeros(len(self.teacher_ids), len(self.EPOCH_METRICS) + 1), persistent=False)

    @torch.no_grad()
    def _accumulate(self, values: list[torch.Tensor], batch_size: int) -> None:
        ones = torch.ones_like(values[0])
        self.epoch_sums += torch.stack([*values, ones], 1) * batch_size  # (K, M + 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logs = self._shared_step(batch)
        # per epoch: a shard gives ~8 batches an epoch, so per-step logging every log_every_n_steps (50 by
        # default, counted within the epoch) would never reach a logger passed with --trainer.logger
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self.epoch_sums.zero_()

    def epoch_examples(self) -> torch.Tensor:
        """Examples each teacher trained on in the epoch so far: (K,) on the CPU (0: no step taken)."""
        return self.epoch_sums[:, -1].detach().cpu()

    def epoch_metrics(self) -> dict[str, torch.Tensor]:
        """Per-teacher means over the epoch just finished: name -> (K,) on the CPU."""
        sums = self.epoch_sums.detach().cpu()
        count = sums[:, -1].clamp(min=1)
        return {name: sums[:, i] / count for i, name in enumerate(self.EPOCH_METRICS)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["stream_counters"] = {name: getattr(self, name).get_state() for name in self.GENERATORS}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints of older versions hold per-teacher torch.Generator states under "generators" instead:
        # their streams no longer exist, so such a group resumes with its counters at 0 (seeded
        # randomness only: dropout and reparameterization noise, never privacy noise)
        saved = checkpoint.get("stream_counters", {})
        for name in (name for name in self.GENERATORS if name in saved):
            getattr(self, name).set_state(saved[name])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # fused Adam: one pass over the stacked weights instead of ~10 (measured 2x per VAE step on CPU);
        # Adam is elementwise, so teachers sharing it stay independent
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=True
        )
