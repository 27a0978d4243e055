"""The settings that shape a teacher's outputs, recorded in its done-marker so a rerun can tell them apart.

A marker (``stage_table``) says a teacher is done; with the settings it was made with beside it, a
rerun with other settings (``--trainer.max_epochs 8`` after 3) stops and names what changed instead
of skipping the teacher, and ``--overwrite true`` redoes it. Settings that only name places or
choose how the work is split (data and run folders, teacher ids, ensemble size, devices) are left
out: moving a run or adding a device does not change a teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pate_lightning.errors import PateError
from pate_lightning.io import MARKER_HASH_KEY, sha256_json
from pate_lightning.pipeline.group_checkpoint import DATA_LOCATIONS

# Trainer arguments that change what a group trains or decodes (the rest: devices, logging, progress bars)
OUTPUT_TRAINER_KEYS = (
    "max_epochs", "min_epochs", "max_steps", "min_steps", "limit_train_batches", "limit_predict_batches",
    "overfit_batches", "precision", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches",
    "deterministic", "fast_dev_run", "callbacks",
)


def _plain(value: Any) -> Any:
    """JSON-able form of a config value (jsonargparse Namespaces of callbacks, paths, tuples)."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def output_settings(model_hparams: Mapping[str, Any], data_hparams: Mapping[str, Any],
                    trainer_config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model": ..., "data": ..., "trainer": ...}``: what a teacher's outputs depend on, teacher ids aside.

    >>> output_settings({"lr": 0.001, "teacher_ids": [3]}, {"run_dir": "r", "seed": 42}, {"max_epochs": 3, "devices": 2})
    {'model': {'lr': 0.001}, 'data': {'seed': 42}, 'trainer': {'max_epochs': 3}}
    """
    return {
        "model": _plain({k: v for k, v in model_hparams.items() if k != "teacher_ids" and not k.startswith("_")}),
        "data": _plain({k: v for k, v in data_hparams.items() if k not in DATA_LOCATIONS and not k.startswith("_")}),
        "trainer": _plain({k: trainer_config[k] for k in OUTPUT_TRAINER_KEYS if k in trainer_config}),
    }


def changed_settings(report: Mapping[str, Any], settings: dict[str, Any]) -> list[str]:
    """The settings that differ from those a marker records; [] when equal or unrecorded (older runs).

    >>> old = {"model": {"lr": 0.1}, "data": {}, "trainer": {"max_epochs": 3}}
    >>> changed_settings({"settings_hash": "x", "settings": old}, {**old, "trainer": {"max_epochs": 8}})
    ['trainer.max_epochs: 3 -> 8']
    """
    # io.write_marker records the settings and their hash in the marker's one write
    if MARKER_HASH_KEY not in report or report[MARKER_HASH_KEY] == sha256_json(settings):
        return []
    saved = report.get("settings") or {}
    changes = []
    for part in ("model", "data", "trainer"):
        before, after = saved.get(part) or {}, settings.get(part) or {}
        changes += [f"{part}.{k}: {before.get(k)} -> {after.get(k)}" for k in sorted(set(before) | set(after))
                    if before.get(k) != after.get(k)]
    return changes or ["(settings recorded differently)"]


def refuse_changed(stage: str, marker: Path, teacher_id: int, changes: list[str], count: int) -> PateError:
    return PateError(
        f"teacher {teacher_id}'s {stage} outputs were made with other settings ({'; '.join(changes)})"
        + (f", and so were {count - 1} more teachers'" if count > 1 else "")
        + ". Rerun with --overwrite true to redo them with the new settings, or restore the old settings.",
        marker,
    )
