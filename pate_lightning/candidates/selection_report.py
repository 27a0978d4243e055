"""``selection_report.json``: a teacher's selection (every candidate counted once), its settings, inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import torch

from pate_lightning import layout
from pate_lightning.candidates.selection_result import SelectionResult, to_report
from pate_lightning.generators.families import selection_entry
from pate_lightning.io import sha256_file


def selection_report(
    teacher_id: int, result: SelectionResult, *, mode: str, label_mismatch: int, label_counts: torch.Tensor,
    thresholds: dict, generation: dict, normalization: str, run_dir: Path, inputs: dict[str, Path],
    outputs: dict[str, Path],
) -> dict:
    """The report of ``result`` (a whole pool's selection) with what the generate stage read and wrote.

    Args:
        mode: ``teacher_filters`` or ``pate`` (labels are the requested classes, the shard is never read).
        label_mismatch: conditional generation: candidates whose teacher argmax differs from the requested class.
        label_counts: (10,) the teacher's own argmax labels over the pool.
        thresholds: the settings as recorded (``LabelingSettings.report``).
    """
    final = to_report(result)
    kept, rejected_by, pool_size = final["kept"], final["rejected_by"], final["pool_size"]
    report = {
        "teacher_id": teacher_id,
        "approach": "per_teacher_vae",
        "selection": mode,
        "label_source": "requested_class" if mode == "pate" else "teacher_classifier",
        "label_mismatch": label_mismatch if generation.get("conditional") and mode != "pate" else None,
        "privacy": selection_entry(mode, bool(generation.get("conditional"))),
        "pool_size": pool_size,
        "kept": kept,
        "empty": kept == 0,
        "rejected_by": rejected_by,
        "funnel": final["funnel"],
        "per_class": final["per_class"],
        "shortfall": final["shortfall"],
        "pool_label_counts": {str(c): int(n) for c, n in enumerate(label_counts.tolist())},
        "mean_confidence": final["mean_confidence"],
        "nn_distance": final["nn_distance"] if mode != "pate" else None,  # pate mode never reads the shard
        "thresholds": thresholds,
        "generation": generation,
        "seeds": {"seed": generation["seed"], "teacher_seed": generation["teacher_seed"]},
        "classifier_normalization": normalization,
        "inputs": {name: _file_entry(path, run_dir) for name, path in inputs.items()},
        "outputs": {name: _file_entry(path, run_dir) for name, path in outputs.items()},
    }
    if kept == 0:
        worst = max(rejected_by, key=rejected_by.get)
        report["warning"] = (
            f"no candidate survived the filters ({worst}: {rejected_by[worst]} of {pool_size}); "
            "the dataset files hold 0 samples. Train the VAE/classifier longer or relax the thresholds."
        )
    return report


def _file_entry(path: Path, run_dir: Path) -> dict[str, str]:
    return {"path": layout.relative_to_run(path, run_dir), "sha256": sha256_file(path)}
