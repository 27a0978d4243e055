"""KL annealing: beta rises linearly from 0 to 1 over the first epochs (the guide's default 20)."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


def kl_beta(epoch: int, annealing_epochs: int) -> float:
    """Beta for a 0-based epoch: 0 at epoch 0, 1 from ``annealing_epochs`` on.

    >>> [kl_beta(e, 4) for e in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> kl_beta(3, 0)
    1.0
    """
    if annealing_epochs <= 0:
        return 1.0
    return min(1.0, epoch / annealing_epochs)


class KLAnnealing(Callback):
    """Sets ``pl_module.beta`` at the start of each training epoch and logs it as ``train/beta``.

    Args:
        kl_annealing_epochs: epochs over which beta goes from 0 to 1 (0 disables annealing).
    """

    def __init__(self, kl_annealing_epochs: int = 20) -> None:
        if kl_annealing_epochs < 0:
            raise ValueError(f"kl_annealing_epochs must be >= 0, got {kl_annealing_epochs}")
        self.kl_annealing_epochs = kl_annealing_epochs

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.beta = kl_beta(trainer.current_epoch, self.kl_annealing_epochs)
        pl_module.log("train/beta", pl_module.beta, on_step=False, on_epoch=True)
