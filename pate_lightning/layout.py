"""Where every file of a run lives, relative to the run directory (seed-compatible names)."""

from __future__ import annotations

from pathlib import Path


def shard_file(run_dir: Path) -> Path:
    return Path(run_dir) / "shard_indices.json"


def teacher_dir(run_dir: Path, teacher_id: int) -> Path:
    return Path(run_dir) / "teachers" / f"teacher_{teacher_id}"


def vae_dir(run_dir: Path, teacher_id: int) -> Path:
    return Path(run_dir) / "teacher_vaes" / f"teacher_{teacher_id}"


def classifier_dir(run_dir: Path, teacher_id: int, teachers_dir: str = "trained_nets") -> Path:
    return Path(run_dir) / teachers_dir / str(teacher_id)


def candidates_file(run_dir: Path, teacher_id: int) -> Path:
    return Path(run_dir) / "candidates" / f"candidates_teacher_{teacher_id}.pt"


def logs_dir(run_dir: Path, stage: str, teacher_id: int) -> Path:
    return Path(run_dir) / "logs" / stage / f"teacher_{teacher_id}"


def checkpoints_dir(run_dir: Path, stage: str, teacher_ids: list[int]) -> Path:
    name = f"teacher_{teacher_ids[0]}" if len(teacher_ids) == 1 else f"teachers_{teacher_ids[0]}-{teacher_ids[-1]}"
    return Path(run_dir) / "checkpoints" / stage / name


# generate / evaluate / combine (per-teacher synthetic datasets)
def decoder_file(run_dir: Path, teacher_id: int) -> Path:
    return vae_dir(run_dir, teacher_id) / "decoder.pth"


def candidates_grid_file(run_dir: Path, teacher_id: int) -> Path:
    return Path(run_dir) / "candidates" / f"candidates_teacher_{teacher_id}.png"


def synthetic_samples_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "synthetic_samples.pt"


def labels_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "labels.csv"


def selection_report_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "selection_report.json"


def evaluation_report_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "evaluation_report.json"


def reference_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "reference"


def synthetic_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "synthetic"


# pate (votes, noisy aggregation, student, report)
def pate_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "pate"


def votes_file(run_dir: Path, query_source: str) -> Path:
    return pate_dir(run_dir) / f"votes_{query_source}.pt"


def pate_report_file(run_dir: Path) -> Path:
    return pate_dir(run_dir) / "report.json"


def pate_diagnostics_file(run_dir: Path) -> Path:
    """Values from the un-noised votes: never published (see pate/publish.py)."""
    return pate_dir(run_dir) / "diagnostics.json"
