"""Runs a stage teacher group by teacher group: fresh module, data and Trainer per group.

A group is up to ``ensemble_size`` teachers of equal shard size, trained stacked in one
module. Teachers whose stage report is readable are skipped (unless ``overwrite``), and each group's
files are written when its run ends, so an interrupted run loses at most the group in progress.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from lightning.pytorch import Callback

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.io import read_json

log = logging.getLogger(__name__)

# stage name -> the file whose presence means a teacher's stage is complete (written last)
DONE_MARKERS: dict[str, Callable[[Path, int], Path]] = {
    "teacher_vae": lambda run_dir, t: layout.vae_dir(run_dir, t) / "training_report.json",
}
# stage name -> callback class that writes the stage's per-teacher files; takes (run_dir)
EXPORTERS: dict[str, Callable[[Path], Callback]] = {}

# Teachers per stacked step when not set, per stage and accelerator: measured (README, Scale section).
# On a 2-core CPU the VAE gains up to 16 (per-step overhead amortised) while the convolutional
# classifier is fastest at 4 (its stacked activations leave the cache beyond that). On an H200
# larger stacks were faster for both (VAE: 161, 182, 201 teacher-epochs/s at 32, 64, 125;
# classifier: 110.4 s at 64, 106.3 s at 250 for 250 teachers x 20 epochs), so the whole partition.
DEFAULT_ENSEMBLE_SIZE = {"cpu": 16, "gpu": 250}
STAGE_ENSEMBLE_SIZE = {"teacher_classifier": {"cpu": 4, "gpu": 250}}


def register_stage(
    stage: str, marker: Callable[[Path, int], Path], exporter: Optional[Callable[[Path], Callback]] = None
) -> None:
    """``exporter`` None: the stage's files are written by a callback the config names (e.g. ``generate``)."""
    DONE_MARKERS[stage] = marker
    if exporter is not None:
        EXPORTERS[stage] = exporter


def teacher_groups(teacher_ids: Sequence[int], shard_sizes: dict[int, int], group_size: int) -> list[list[int]]:
    """Consecutive teachers of equal shard size, in chunks of at most ``group_size``.

    >>> teacher_groups([0, 1, 2, 3, 4], {0: 240, 1: 240, 2: 241, 3: 241, 4: 241}, 2)
    [[0, 1], [2, 3], [4]]
    """
    if group_size < 1:
        raise ValueError(f"ensemble_size must be >= 1, got {group_size}")
    groups: list[list[int]] = []
    for teacher_id in teacher_ids:
        if groups and len(groups[-1]) < group_size and shard_sizes[groups[-1][0]] == shard_sizes[teacher_id]:
            groups[-1].append(teacher_id)
        else:
            groups.append([teacher_id])
    return groups


def is_done(marker: Path) -> bool:
    """A teacher's stage is done when its marker (written last, atomically) is a readable JSON object.

    A marker that exists but is not (damaged on disk, or edited by hand) means the teacher's files
    cannot be trusted: it is redone, with a warning naming the file, rather than skipped forever.
    """
    if not marker.exists():
        return False
    try:
        report = read_json(marker)
    except PateError as error:
        log.warning("%s; the teacher is redone", error)
        return False
    if not isinstance(report, dict):
        log.warning("%s: is not a JSON object, so not a complete stage report; the teacher is redone", marker)
        return False
    return True


def pending_teachers(stage: str, run_dir: Path, teacher_ids: Sequence[int], overwrite: bool) -> list[int]:
    if overwrite or stage not in DONE_MARKERS:
        return list(teacher_ids)
    return [t for t in teacher_ids if not is_done(DONE_MARKERS[stage](run_dir, t))]


def default_ensemble_size(accelerator: Optional[str], stage: Optional[str] = None) -> int:
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator in (None, "auto") and torch.cuda.is_available())
    table = STAGE_ENSEMBLE_SIZE.get(stage or "", DEFAULT_ENSEMBLE_SIZE)
    return table["gpu" if on_gpu else "cpu"]


class Progress:
    """One line per group: teachers done, elapsed time and ETA."""

    def __init__(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done, self.started = stage, total, 0, time.perf_counter()

    def advance(self, count: int) -> str:
        self.done += count
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        return f"[{self.stage}] {self.done}/{self.total} teachers, elapsed {elapsed:.0f}s, ETA {eta:.0f}s"
