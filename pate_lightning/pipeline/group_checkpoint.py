"""``last.ckpt`` of a teacher group, written atomically every few epochs, for resuming mid-training.

A teacher group's finished files are what a rerun keeps (the runner skips finished teachers);
this checkpoint only covers a group still training, so there is one file per group (no top-k
copies) and the runner deletes it once the group's files are written. Before, Lightning's
default wrote two full checkpoints every epoch (346 MB per 16-teacher VAE group, 5.4 GB for
250 teachers) that nothing read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer

from pate_lightning.errors import PateError
from pate_lightning.io import load_torch

LAST = "last.ckpt"
# --overwrite does not skip a group's checkpoint: deleting it is the way to start the group again
AFRESH = "Delete it to start this teacher group afresh (teachers already finished are kept)."


class GroupCheckpoint(Callback):
    """Replaces ``{dirpath}/last.ckpt`` every ``every_n_epochs`` epochs while a group trains.

    Not Lightning's ``ModelCheckpoint``: with ``save_top_k=0`` that writes ``last.ckpt`` only when
    training ends, the one moment it is not needed. Must come after the stage's exporter in the
    callback list, so the checkpoint holds the exporter's history of the epoch just finished.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"checkpoint_every_n_epochs must be >= 1, got {every_n_epochs}")
        self.path = Path(dirpath) / LAST
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        done = trainer.current_epoch + 1
        if trainer.sanity_checking or trainer.fast_dev_run or done % self.every_n_epochs:
            return
        if trainer.max_epochs is not None and done >= trainer.max_epochs:
            return  # the group's files are written next; a checkpoint now would be deleted unread
        # write beside, then rename: a run killed mid-write leaves the previous last.ckpt intact
        partial = self.path.with_name(LAST + ".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)


# data settings that name places, not what a group trains on: a moved data or run folder still resumes
DATA_LOCATIONS = ("data_dir", "run_dir", "teacher_ids", "start_id", "count")


def _changed(saved: dict[str, Any], current: dict[str, Any], prefix: str, ignore: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{prefix}{k}" for k in current if k not in ignore and saved.get(k) != current[k])


def resumable(path: Path, model: LightningModule, datamodule: Optional[LightningDataModule] = None) -> bool:
    """True when ``path`` exists and was written for the same model and data settings; else a clear error.

    Read with ``weights_only=True`` (a planted checkpoint cannot run code), memory-mapped so a large
    group checkpoint costs little to check.
    """
    if not path.exists():
        return False
    checkpoint = load_torch(path, "the checkpoint to resume this teacher group from", mmap=True, advice=AFRESH)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise PateError(f"is not a Lightning checkpoint with hyper_parameters. {AFRESH}", path)
    saved_teachers, teachers = checkpoint["hyper_parameters"].get("teacher_ids"), model.hparams.get("teacher_ids")
    if saved_teachers is not None and teachers is not None and list(saved_teachers) != list(teachers):
        # stacked weights are matched by position: teacher 7 would go on from teacher 5's weights (shard 5's data)
        raise PateError(
            f"this checkpoint holds teachers {list(saved_teachers)}, not this group's teachers {list(teachers)}, so "
            f"training cannot resume from it. Select the checkpoint's teachers (--data.teacher_ids), or give each "
            f"group its own checkpoint (without --ckpt_path a group resumes from its own last.ckpt).",
            path,
        )
    changed = _changed(checkpoint["hyper_parameters"], dict(model.hparams), "model.")
    if datamodule is not None:
        saved_data = checkpoint.get("datamodule_hyper_parameters") or {}
        changed += _changed(saved_data, dict(datamodule.hparams), "data.", DATA_LOCATIONS)
    if changed:
        raise PateError(
            f"this teacher group's checkpoint was written with different settings ({', '.join(changed)}), so "
            f"training cannot resume from it. Restore those settings, or delete the checkpoint to start the group afresh.",
            path,
        )
    return True
