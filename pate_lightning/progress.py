"""``EpochProgress``: a log line per training epoch (or a heartbeat every so many seconds) for long fits.

Progress bars are off in the configs (they garble logs and teacher-parallel output); this keeps a
long step from sitting silent: the student prints a line per epoch, a teacher group one a minute.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping

from lightning.pytorch import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


def epoch_line(label: str, epoch: int, max_epochs: int, metrics: Mapping[str, float], seconds: float) -> str:
    """``[student] epoch 3/10  train/loss 0.412  val/acc 0.903  (12 s)``: metrics in name order, 3 decimals.

    >>> epoch_line("student", 3, 10, {"val/acc": 0.9031, "train/loss": 0.41249}, 12.4)
    '[student] epoch 3/10  train/loss 0.412  val/acc 0.903  (12 s)'
    """
    values = "".join(f"  {name} {value:.3f}" for name, value in sorted(metrics.items()))
    return f"[{label}] epoch {epoch}/{max_epochs}{values}  ({seconds:.0f} s)"


class EpochProgress(Callback):
    """Logs ``epoch_line`` at the end of a training epoch: every epoch, or at most once per ``every_seconds``.

    The last epoch is always logged. Metrics are the scalars Lightning holds for ``train/`` and ``val/``.

    Args:
        label: what is training, e.g. ``student`` or ``teacher_vae teachers [0, 1]``.
        every_seconds: the least time between two lines (0: a line per epoch).
    """

    def __init__(self, label: str, every_seconds: float = 0.0) -> None:
        self.label = label
        self.every_seconds = every_seconds
        self.started = self.last = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = self.last = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        now = time.perf_counter()
        epoch, max_epochs = trainer.current_epoch + 1, trainer.max_epochs
        if now - self.last < self.every_seconds and epoch < max_epochs:
            return
        self.last = now
        metrics = {
            name: float(value) for name, value in trainer.callback_metrics.items()
            if name.startswith(("train/", "val/")) and value.numel() == 1
        }
        log.info(epoch_line(self.label, epoch, max_epochs, metrics, now - self.started))
