"""The stage table: one record per command of ``pate-lightning``, read by the CLI, the runner and the pipeline.

A record names what a newcomer needs to follow a stage: the command that runs it, its default
config, the file whose presence marks a teacher done (from ``layout``), the callback that writes
its per-teacher files, and how many teachers train stacked per accelerator. Stage code is named
by import path and loaded only when the stage runs, so ``pate-lightning --help`` stays fast and
this module imports nothing but ``layout``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from pate_lightning import layout

LIGHTNING_KINDS = ("fit", "predict")  # run by the runner, teacher group by teacher group

# Teachers per stacked step when not set, measured (docs/scale.md). On a 2-core CPU the VAE gains up
# to 16 (per-step overhead amortised) while the convolutional classifier is fastest at 4 (its stacked
# activations leave the cache beyond that). On an H200 larger stacks were faster for both (VAE: 161,
# 182, 201 teacher-epochs/s at 32, 64, 125; classifier: 110.4 s at 64, 106.3 s at 250 for 250 teachers
# x 20 epochs), so the whole partition.
STACKED = {"cpu": 16, "gpu": 250}


@dataclass(frozen=True)
class Stage:
    """One command of ``pate-lightning``.

    Args:
        name: the stage's name (pipeline section, ``logs/{name}``, ``run_summary.json`` key).
        kind: ``fit``/``predict`` (a LightningCLI config run group by group) or ``command`` (a function).
        help: one line for ``pate-lightning --help``.
        config: default config, relative to the repository (None: the command's own defaults).
        target: ``module:attribute``; the LightningModule of a fit/predict stage, the function of a command.
        done_marker: (run_dir, teacher_id) -> the file written last for a teacher; present = done.
        writer: ``module:Class`` of the callback that writes the per-teacher files.
        writer_from_config: the config names the writer (its thresholds are settings), else the runner adds it.
        ensemble_size: teachers stacked per step when ``--ensemble_size`` is not set, per accelerator.
        in_pipeline: a step of ``pate-lightning pipeline``.
        optional: a pipeline step only when the pipeline config has a section for it.
        shared_data_keys: the pipeline's shared keys given to the stage's data module (a stage on a public set
            takes none of the private run's data settings).
        run_dir_of: the stage's own run dir from the pipeline's, a ``layout`` function (None: the pipeline's).
        own_parser: the command's target takes the raw arguments (its own argparse, e.g. ``--routes a b``).
    """

    name: str
    kind: str
    help: str
    config: Optional[str] = None
    target: Optional[str] = None
    done_marker: Optional[Callable[[Path, int], Path]] = None
    writer: Optional[str] = None
    writer_from_config: bool = False
    ensemble_size: Mapping[str, int] = field(default_factory=lambda: dict(STACKED))
    in_pipeline: bool = True
    optional: bool = False
    shared_data_keys: tuple[str, ...] = ("run_dir", "data_dir", "dataset", "num_teachers", "teacher_ids")
    run_dir_of: Optional[Callable[[Path], Path]] = None
    own_parser: bool = False

    @property
    def command(self) -> str:
        """What a user types: ``fit``/``predict`` for Lightning stages, else the stage's own name."""
        return self.kind if self.kind in LIGHTNING_KINDS else self.name

    def load_target(self) -> Any:
        return load(self.target)

    def writer_class(self) -> Optional[type]:
        return load(self.writer) if self.writer else None


def _classifier_marker(run_dir: Path, teacher_id: int) -> Path:
    return layout.classifier_report_file(layout.classifiers_root(run_dir), teacher_id)


# In data-flow order: the pipeline runs the in_pipeline stages in this order.
STAGES: tuple[Stage, ...] = (
    Stage("prepare", "command", "make a dataset readable offline under --data_dir",
          target="pate_lightning.data.prepare:prepare_command", in_pipeline=False),
    Stage("teacher_classifier", "fit", "a classifier per teacher -> trained_nets/{id}/",
          config="configs/teacher_classifier.yaml",
          target="pate_lightning.classifiers.module:TeacherClassifierModule",
          done_marker=_classifier_marker, writer="pate_lightning.classifiers.export:ClassifierExport",
          ensemble_size={"cpu": 4, "gpu": 250}),
    Stage("eval-teachers", "command", "test accuracy of a folder of teacher classifiers",
          target="pate_lightning.classifiers.eval_command:eval_teachers_command", in_pipeline=False),
    Stage("public_prior", "fit", "a VAE on a public set (font digits), for the public/hybrid families -> public_vae/",
          config="configs/generators/public_prior.yaml", target="pate_lightning.generators.module:TeacherVAEModule",
          done_marker=lambda run_dir, _: layout.vae_report_file(layout.public_prior_dir(run_dir), 0),
          writer="pate_lightning.generators.export:VAEExport", optional=True, shared_data_keys=("data_dir",),
          run_dir_of=layout.public_prior_dir),
    Stage("union_dp_generator", "command",
          "the public prior fine-tuned by DP-SGD over the union of the shards, for the public family -> union_vae/",
          target="pate_lightning.generators.union_dp_command:union_dp_generator_command", optional=True),
    Stage("teacher_vae", "fit", "a VAE per teacher -> teacher_vaes/teacher_{id}/",
          config="configs/teacher_vae.yaml", target="pate_lightning.generators.module:TeacherVAEModule",
          done_marker=layout.vae_report_file, writer="pate_lightning.generators.export:VAEExport"),
    Stage("generate", "predict", "label and select synthetic data -> teachers/teacher_{id}/",
          config="configs/generate.yaml", target="pate_lightning.candidates.generator:CandidateGenerator",
          done_marker=layout.selection_report_file, writer="pate_lightning.candidates.labeling:LabelingCallback",
          writer_from_config=True),
    Stage("evaluate", "command", "success criteria of each synthetic dataset",
          config="configs/evaluate.yaml", target="pate_lightning.evaluation.command:evaluate_command",
          done_marker=layout.evaluation_report_file),
    Stage("combine", "command", "pool the teachers' synthetic data -> synthetic/",
          config="configs/combine.yaml", target="pate_lightning.candidates.combine:combine_command"),
    Stage("pate", "command", "votes, noisy aggregation, privacy, student -> pate/",
          config="configs/pate.yaml", target="pate_lightning.pate.command:pate_command"),
    Stage("generator_student", "command",
          "the student on a generator's own class-conditional samples, no PATE -> generator_student/",
          target="pate_lightning.baselines.generator_student:generator_student_command", optional=True),
    Stage("dp_sgd_student", "command", "baseline: the student on the union of the shards by DP-SGD -> dp_sgd_student/",
          target="pate_lightning.baselines.dp_sgd_command:dp_sgd_student_command", optional=True),
    Stage("compare", "command", "routes side by side, with replicates -> results.json, results.md, picture",
          target="pate_lightning.compare.command:compare_main", in_pipeline=False, own_parser=True),
)
BY_NAME: dict[str, Stage] = {stage.name: stage for stage in STAGES}
PIPELINE_STAGES: tuple[Stage, ...] = tuple(stage for stage in STAGES if stage.in_pipeline)
COMMANDS: dict[str, Stage] = {stage.name: stage for stage in STAGES if stage.kind == "command"}


def get(name: str) -> Stage:
    """The stage called ``name``; an unknown name is an error listing the stages."""
    if name not in BY_NAME:
        raise ValueError(f"unknown stage {name!r}; choose one of {list(BY_NAME)}")
    return BY_NAME[name]


def of_module(module: Any) -> Stage:
    """The fit/predict stage whose LightningModule ``module`` is (its class attribute ``stage``)."""
    name = getattr(module, "stage", None)
    if name not in BY_NAME or BY_NAME[name].kind not in LIGHTNING_KINDS:
        raise ValueError(
            f"model {type(module).__name__} is not a pate-lightning stage module; the fit/predict stages are "
            + ", ".join(f"{s.name} ({s.target})" for s in STAGES if s.kind in LIGHTNING_KINDS)
        )
    return BY_NAME[name]


def load(target: str) -> Any:
    """``module:attribute`` -> the attribute, imported now (stage code loads only when a stage runs)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
