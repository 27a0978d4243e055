"""Which teachers a fit/predict stage still has to do, and in which groups: pure bookkeeping for ``runner``.

A teacher is done when its stage's done-marker (``stage_table``) is a readable JSON object; the rest
are split into consecutive groups of equal shard size, stacked in one module each.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from pate_lightning.errors import PateError
from pate_lightning.io import read_json
from pate_lightning.pipeline import stage_table
from pate_lightning.pipeline.teacher_settings import changed_settings, refuse_changed

log = logging.getLogger(__name__)


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


def done_report(marker: Path) -> Optional[dict[str, Any]]:
    """The marker's report when the teacher's stage is done, else None: done when its marker (written last,
    atomically) is a readable JSON object.

    A marker that exists but is not (damaged on disk, or edited by hand) means the teacher's files
    cannot be trusted: it is redone, with a warning naming the file, rather than skipped forever.
    """
    if not marker.exists():
        return None
    try:
        report = read_json(marker)
    except PateError as error:
        log.warning("%s; the teacher is redone", error)
        return None
    if not isinstance(report, dict):
        log.warning("%s: is not a JSON object, so not a complete stage report; the teacher is redone", marker)
        return None
    return report


def pending_teachers(
    stage: str, run_dir: Path, teacher_ids: Sequence[int], overwrite: bool, settings: Optional[dict[str, Any]] = None
) -> list[int]:
    """The teachers without a done-marker; with ``settings``, a marker made with other settings stops the run."""
    marker = stage_table.get(stage).done_marker
    if overwrite or marker is None:
        return list(teacher_ids)
    reports = {t: done_report(marker(Path(run_dir), t)) for t in teacher_ids}
    done = [t for t in teacher_ids if reports[t] is not None]
    if settings is not None:
        changed = {t: changed_settings(reports[t], settings) for t in done}
        stale = [t for t in done if changed[t]]
        if stale:
            raise refuse_changed(stage, marker(Path(run_dir), stale[0]), stale[0], changed[stale[0]], len(stale))
    return [t for t in teacher_ids if t not in done]


def default_ensemble_size(accelerator: Optional[str], stage: str) -> int:
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator in (None, "auto") and torch.cuda.is_available())
    return stage_table.get(stage).ensemble_size["gpu" if on_gpu else "cpu"]


class Progress:
    """One line per group: teachers done, elapsed time and ETA."""

    def __init__(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done, self.started = stage, total, 0, time.perf_counter()

    def advance(self, count: int) -> str:
        self.done += count
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        return f"[{self.stage}] {self.done}/{self.total} teachers, elapsed {elapsed:.0f}s, ETA {eta:.0f}s"
