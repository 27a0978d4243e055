"""``LabelingCallback``: the generate stage's hooks into ``Trainer.predict``; the work is ``labeling_stage``'s.

Each teacher's candidates are labeled by its own classifier and screened batch by batch; when the
pool is done the survivors are selected and the teacher's files written (see ``labeling_stage``).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from pate_lightning.candidates import labeling_stage
from pate_lightning.candidates.labeling_stage import TeacherPool

log = logging.getLogger(__name__)


class LabelingCallback(Callback):
    """Labels, filters and writes each teacher's synthetic dataset during ``predict``.

    Args:
        teachers_dir: classifier folder ``{teachers_dir}/{id}/model.pth``, relative to the run dir unless absolute.
        normalization: the classifiers' input normalization (``mnist`` or ``half``).
        confidence_threshold: rule (1): a candidate needs max softmax probability >= this.
        rare_class_thresholds: lower per-class thresholds, e.g. ``{1: 0.7, 8: 0.7}``.
        min_nn_distance: rule (2): L2 distance (pixels in [0, 1]) to the nearest shard image must be >= this.
        min_diversity_distance: rule (3): distance to every kept sample of the class must be >= this; 0 disables.
        quota: rule (4): per-class targets proportional to the shard's class distribution.
        min_per_class: smallest quota; a class kept below it is reported as a shortfall (never padded).
        max_per_class: the most frequent class's quota.
        save_candidates: also write the whole pool to ``candidates/candidates_teacher_{id}.pt``.
        save_grid: also write a PNG grid of the first 64 candidates beside it.
        selection: ``teacher_filters`` (rules (1)-(4), reading the teacher's classifier and shard) or
            ``pate`` (no private filter; needs a conditional decoder; see ``labeling_stage``).
    """

    def __init__(
        self,
        teachers_dir: str = "trained_nets",
        normalization: str = "mnist",
        confidence_threshold: float = 0.9,
        rare_class_thresholds: Optional[dict[int, float]] = None,
        min_nn_distance: float = 2.0,
        min_diversity_distance: float = 3.0,
        quota: bool = True,
        min_per_class: int = 150,
        max_per_class: int = 500,
        save_candidates: bool = False,
        save_grid: bool = False,
        selection: str = "teacher_filters",
    ) -> None:
        self.settings = labeling_stage.labeling_settings(
            teachers_dir=teachers_dir, normalization=normalization, confidence_threshold=confidence_threshold,
            rare_class_thresholds=rare_class_thresholds, min_nn_distance=min_nn_distance,
            min_diversity_distance=min_diversity_distance, quota=quota, min_per_class=min_per_class,
            max_per_class=max_per_class, save_candidates=save_candidates, save_grid=save_grid, selection=selection,
        )
        self.pools: dict[int, TeacherPool] = {}
        self.started = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        # every input of every teacher in the group is read (and checked) before any output is written
        self.pools = {t: labeling_stage.open_teacher(self.settings, trainer.datamodule, t) for t in pl_module.teacher_ids}

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()
        for pool in self.pools.values():
            labeling_stage.to_device(pool, pl_module.device)

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: torch.Tensor, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        requested = batch[1] if isinstance(batch, (tuple, list)) else None  # (K, B) for conditional decoders
        for k, teacher_id in enumerate(pl_module.teacher_ids):  # outputs: (K, B, 1, 28, 28)
            labeling_stage.add_batch(self.settings, self.pools[teacher_id], outputs[k], None if requested is None else requested[k])

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = time.perf_counter() - self.started
        total = sum(pool.seen for pool in self.pools.values())
        log.info(
            "[generate] teachers %s: %d candidates decoded and labeled in %.1fs (%.0f/s)",
            pl_module.teacher_ids, total, seconds, total / max(seconds, 1e-9),
        )
        for teacher_id in pl_module.teacher_ids:
            report = labeling_stage.finish_teacher(self.settings, trainer.datamodule, teacher_id, self.pools.pop(teacher_id))
            if report["empty"]:
                warnings.warn(f"teacher {teacher_id}: {report['warning']}", stacklevel=2)  # every rank: teachers differ
