"""``run_summary.json``: one section per stage, gathered by rank 0 from the per-teacher reports."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from pate_lightning import layout
from pate_lightning.pipeline import stage_table
from pate_lightning.io import read_json, write_json

def _brief(report: dict[str, Any]) -> dict[str, Any]:
    """The scalar fields of a report (curves and nested tables stay in the report itself)."""
    brief = {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool)) or v is None}
    if isinstance(report.get("final"), dict):
        brief.update({f"final_{k}": v for k, v in report["final"].items() if isinstance(v, (int, float))})
    return brief


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = layout.run_summary_file(run_dir)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a summary is derived data: rebuild it rather than fail


def record_stage(run_dir: Path, stage: str, teacher_ids: Sequence[int], world_size: int = 1, **extra: Any) -> Path:
    """Merge the stage's per-teacher reports into ``run_summary.json`` (atomically)."""
    teachers: dict[str, Any] = {}
    missing = []
    done_marker = stage_table.get(stage).done_marker
    for teacher_id in teacher_ids:
        marker = done_marker(Path(run_dir), teacher_id) if done_marker is not None else None
        if marker is None or not marker.exists():
            missing.append(teacher_id)
            continue
        teachers[str(teacher_id)] = _brief(read_json(marker))
    summary = read_summary(run_dir)
    section = {"processes": world_size, "teachers_done": len(teachers), "teachers_missing": missing,
               "teachers": teachers, **extra}
    path = layout.run_summary_file(run_dir)
    if {k: v for k, v in summary.get(stage, {}).items() if k != "updated"} == json.loads(json.dumps(section)):
        return path  # nothing new: a rerun that only re-reads finished work writes nothing
    summary[stage] = {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **section}
    return write_json(path, summary)
