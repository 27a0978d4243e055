"""``CandidateGenerator``: decodes each teacher's latent batches with that teacher's own VAE decoder."""

from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn

from pate_lightning.generators.decoders import decoder_from_states


class CandidateGenerator(LightningModule):
    """The ``generate`` stage: latents (K, B, latent_dim) -> candidate images (K, B, 1, 28, 28) in [0, 1].

    The stacked decoder is built in ``configure_model`` from the datamodule's decoder files
    (``LatentDataModule.decoder_states``), so one module serves any group of teachers and the
    latent size always comes from the weights. Labeling and filtering are the
    ``LabelingCallback``'s job; this module only decodes.

    Args:
        teacher_ids: the teachers of this group (set by the runner; default ``[0]``).
    """

    stage = "generate"

    def __init__(self, teacher_ids: Optional[list[int]] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.teacher_ids = list(teacher_ids) if teacher_ids is not None else [0]
        self.decoder: Optional[torch.nn.Module] = None

    def configure_model(self) -> None:
        if self.decoder is not None:
            return
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "decoder_states"):
            raise ValueError(
                f"CandidateGenerator needs a LatentDataModule (with decoder_states), got {type(datamodule).__name__}"
            )
        if list(datamodule.selected) != self.teacher_ids:
            raise ValueError(f"model teachers {self.teacher_ids} differ from data teachers {datamodule.selected}")
        self.decoder = decoder_from_states(datamodule.decoder_states())

    def forward(self, z: torch.Tensor, classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        k, b = z.shape[:2]
        return self.decoder(z, classes).clamp(0.0, 1.0).view(k, b, 1, 28, 28)  # (K, B, 1, 28, 28)

    def predict_step(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # a conditional decoder's batch is (latents, requested classes (K, B))
        return self(*batch) if isinstance(batch, (tuple, list)) else self(batch)

    def on_predict_start(self) -> None:
        if self.trainer.predict_loop.return_predictions:
            rank_zero_warn(
                "predict runs with return_predictions=True: every decoded pool stays in memory until the end. "
                "Set `return_predictions: false` (configs/generate.yaml does)."
            )
