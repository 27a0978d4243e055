"""Where every file of a run lives: the only module that builds a path (seed-compatible names).

Paths are relative to the run directory (``run_dir``, default the working directory). A folder
setting named ``*_dir`` that points into a run (``teachers_dir``, ``vaes_dir``, ``out_dir``) is
resolved by ``resolve_dir``: relative to ``run_dir``, an absolute path kept as it is. ``run_dir``
and ``data_dir`` themselves (the dataset is shared by runs) are relative to the working directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

TRAINED_NETS = "trained_nets"  # saferlearn's folder of teacher classifiers, {id}/model.pth
TEACHER_VAES = "teacher_vaes"
PUBLIC_PRIOR = "public_vae"  # the public prior's own run dir: one "teacher" (id 0) holding the whole public set
UNION_GENERATOR = "union_vae"  # the union DP generator's own run dir, laid out like the public prior's


def resolve_dir(run_dir: str | Path, setting: Optional[str | Path], default: Optional[Path] = None) -> Path:
    """A ``*_dir`` setting: relative to ``run_dir`` unless absolute; ``default`` when the setting is None.

    >>> str(resolve_dir("runs/a", "trained_nets")), str(resolve_dir("runs/a", "/abs/nets"))
    ('runs/a/trained_nets', '/abs/nets')
    """
    if setting is None:
        if default is None:
            raise ValueError("resolve_dir: no setting and no default")
        return Path(default)
    return Path(run_dir) / setting  # pathlib keeps an absolute setting as it is


def relative_to_run(path: str | Path, run_dir: str | Path) -> str:
    """``path`` as recorded in a report: relative to the run directory when inside it, else as given.

    >>> relative_to_run("/tmp/run/teacher_vaes/teacher_0/decoder.pth", "/tmp/run"), relative_to_run("/elsewhere/x", "/tmp/run")
    ('teacher_vaes/teacher_0/decoder.pth', '/elsewhere/x')
    """
    try:
        return str(Path(path).resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:
        return str(path)


def find_teachers(folder: str | Path, marker: Callable[[int], Path]) -> list[int]:
    """The one way teachers are discovered: ids of ``folder``'s entries named ``teacher_{id}`` or ``{id}``
    for which ``marker(id)`` exists (a stage's done-marker, a model file), ascending.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("teacher_3", "teacher_10", "notes"): (root / name).mkdir()
    >>> find_teachers(root, lambda t: root / f"teacher_{t}")
    [3, 10]
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    names = (re.fullmatch(r"(?:teacher_)?(\d+)", entry.name) for entry in root.iterdir())
    return sorted({int(m[1]) for m in names if m and marker(int(m[1])).exists()})


def shard_file(run_dir: Path) -> Path:
    return Path(run_dir) / "shard_indices.json"


def teachers_root(run_dir: Path) -> Path:
    """``teachers/``: per-teacher shard metadata and synthetic datasets."""
    return Path(run_dir) / "teachers"


def teacher_dir(run_dir: Path, teacher_id: int) -> Path:
    return teachers_root(run_dir) / f"teacher_{teacher_id}"


def metadata_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "metadata.json"


# teacher_vae (fit): decoder.pth, vae_full.pth, samples.png, training_report.json (written last)
def vaes_root(run_dir: Path, vaes_dir: str | Path = TEACHER_VAES) -> Path:
    return resolve_dir(run_dir, vaes_dir)


def vae_dir(run_dir: Path, teacher_id: int, vaes_dir: str | Path = TEACHER_VAES) -> Path:
    return vaes_root(run_dir, vaes_dir) / f"teacher_{teacher_id}"


def decoder_file(run_dir: Path, teacher_id: int, vaes_dir: str | Path = TEACHER_VAES) -> Path:
    return vae_dir(run_dir, teacher_id, vaes_dir) / "decoder.pth"


def vae_full_file(run_dir: Path, teacher_id: int) -> Path:
    return vae_dir(run_dir, teacher_id) / "vae_full.pth"


def vae_samples_file(run_dir: Path, teacher_id: int) -> Path:
    return vae_dir(run_dir, teacher_id) / "samples.png"


def vae_report_file(run_dir: Path, teacher_id: int) -> Path:
    return vae_dir(run_dir, teacher_id) / "training_report.json"


# public_prior (fit, pipeline only when configured): a VAE on a public set in {run_dir}/public_vae, which
# the `public` and `hybrid` generator families start from.
def public_prior_dir(run_dir: Path) -> Path:
    return Path(run_dir) / PUBLIC_PRIOR


# union_dp_generator (command, pipeline only when configured): the public prior fine-tuned by DP-SGD over the union of
# the shards, in {run_dir}/union_vae laid out as the public prior, so the `public` family takes it as its public_vae.
def union_generator_dir(run_dir: Path) -> Path:
    return Path(run_dir) / UNION_GENERATOR


def prior_report_file(public_vae: Path) -> Path:
    """The ``training_report.json`` beside a public VAE's ``vae_full.pth``: its privacy record."""
    return Path(public_vae).parent / "training_report.json"


# teacher_classifier (fit): saferlearn's {teachers_dir}/{id}/model.pth, report.json (written last).
# The folder may come from saferlearn, outside any run: the file helpers take the folder itself.
def classifiers_root(run_dir: Path, teachers_dir: str | Path = TRAINED_NETS) -> Path:
    return resolve_dir(run_dir, teachers_dir)


def classifier_dir(run_dir: Path, teacher_id: int, teachers_dir: str | Path = TRAINED_NETS) -> Path:
    return classifiers_root(run_dir, teachers_dir) / str(teacher_id)


def classifier_file(classifiers: Path, teacher_id: int) -> Path:
    """``{classifiers}/{id}/model.pth``; ``classifiers`` from ``classifiers_root``."""
    return Path(classifiers) / str(teacher_id) / "model.pth"


def classifier_report_file(classifiers: Path, teacher_id: int) -> Path:
    return Path(classifiers) / str(teacher_id) / "report.json"


def candidates_file(run_dir: Path, teacher_id: int) -> Path:
    return Path(run_dir) / "candidates" / f"candidates_teacher_{teacher_id}.pt"


def logs_root(run_dir: Path) -> Path:
    """TensorBoard's ``--logdir``: a run per teacher and stage, and the student's runs."""
    return Path(run_dir) / "logs"


def logs_dir(run_dir: Path, stage: str, teacher_id: int) -> Path:
    return logs_root(run_dir) / stage / f"teacher_{teacher_id}"


def checkpoints_dir(run_dir: Path, stage: str, teacher_ids: list[int]) -> Path:
    name = f"teacher_{teacher_ids[0]}" if len(teacher_ids) == 1 else f"teachers_{teacher_ids[0]}-{teacher_ids[-1]}"
    return Path(run_dir) / "checkpoints" / stage / name


# generate / evaluate / combine (per-teacher synthetic datasets)
def candidates_grid_file(run_dir: Path, teacher_id: int) -> Path:
    return Path(run_dir) / "candidates" / f"candidates_teacher_{teacher_id}.png"


def synthetic_samples_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "synthetic_samples.pt"


def labels_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "labels.csv"


def rejected_examples_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "rejected_examples.pt"


def selection_report_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "selection_report.json"


def evaluation_report_file(run_dir: Path, teacher_id: int) -> Path:
    return teacher_dir(run_dir, teacher_id) / "evaluation_report.json"


def reference_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "reference"


def reference_model_file(run_dir: Path) -> Path:
    return reference_dir(run_dir) / "model.pth"


def reference_report_file(run_dir: Path) -> Path:
    return reference_dir(run_dir) / "report.json"


def synthetic_dir(run_dir: Path, out_dir: Optional[str | Path] = None) -> Path:
    """combine's output folder: ``out_dir`` (relative to ``run_dir``) or ``{run_dir}/synthetic``."""
    return resolve_dir(run_dir, out_dir, default=Path(run_dir) / "synthetic")


def combined_file(folder: Path, name: str, kind: str) -> Path:
    """``{folder}/{name}_{kind}``: kind is samples.pt, labels.csv, teacher_ids.csv or metadata.json."""
    return Path(folder) / f"{name}_{kind}"


# pate (votes, noisy aggregation, student, report)
def pate_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "pate"


# everything computed from private data without noise lives under one folder of the run, never named from a
# publishable file: raw vote counts, diagnostics from them, loss plots of private shards (docs/privacy.md)
PRIVATE = "private"


def private_dir(run_dir: Path) -> Path:
    return Path(run_dir) / PRIVATE


def votes_file(run_dir: Path, query_source: str) -> Path:
    """Raw (un-noised) vote counts: private."""
    return private_dir(run_dir) / f"votes_{query_source}.pt"


def legacy_votes_file(run_dir: Path, query_source: str) -> Path:
    """Where runs before the ``private/`` folder kept the vote counts (moved on the next ``pate``)."""
    return pate_dir(run_dir) / f"votes_{query_source}.pt"


def pate_report_file(run_dir: Path) -> Path:
    return pate_dir(run_dir) / "report.json"


def pate_diagnostics_file(run_dir: Path) -> Path:
    """Values from the un-noised votes: never published (see pate/publish.py)."""
    return private_dir(run_dir) / "pate_diagnostics.json"


def legacy_pate_diagnostics_file(run_dir: Path) -> Path:
    return pate_dir(run_dir) / "diagnostics.json"


# run-level records (runner, pipeline, run report)
def run_summary_file(run_dir: Path) -> Path:
    return Path(run_dir) / "run_summary.json"


def pipeline_state_file(run_dir: Path) -> Path:
    return Path(run_dir) / "pipeline_state.json"


def run_lock_file(run_dir: Path) -> Path:
    """Held (``fcntl.flock``) by the pipeline working in ``run_dir``; holds its pid."""
    return Path(run_dir) / ".pipeline.lock"


def pipeline_stage_config(run_dir: Path, stage: str) -> Path:
    """The merged config a pipeline stage ran with, kept for inspection and reruns."""
    return Path(run_dir) / ".pipeline" / f"{stage}.yaml"


def figures_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "figures"


def figure_file(run_dir: Path, name: str) -> Path:
    return figures_dir(run_dir) / f"{name}.png"


def private_figure_file(run_dir: Path, name: str) -> Path:
    """A picture of un-noised private values (a shard's loss curves): private."""
    return private_dir(run_dir) / "figures" / f"{name}.png"


# baselines and compare (routes side by side)
def dp_sgd_student_report_file(run_dir: Path) -> Path:
    """The DP-SGD student baseline's report: the same privacy fields as ``pate/report.json``."""
    return Path(run_dir) / "dp_sgd_student" / "report.json"


def generator_student_report_file(run_dir: Path) -> Path:
    """The student trained on a generator's own class-conditional samples (no PATE): ``pate/report.json``'s fields."""
    return Path(run_dir) / "generator_student" / "report.json"


def replicate_dir(out_dir: Path, route: str, replicate: int) -> Path:
    """One replicate of a route in ``compare``: fresh noise and student, its own ``pate/`` folder."""
    return Path(out_dir) / route / f"replicate_{replicate}"


def compare_file(out_dir: Path, name: str) -> Path:
    """``compare``'s outputs: results.json, results.md, privacy_utility.png."""
    return Path(out_dir) / name
