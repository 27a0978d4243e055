"""Runs a fit/predict stage teacher group by teacher group: fresh module, data and Trainer per group.

A group is up to ``ensemble_size`` teachers of equal shard size, trained stacked in one
module (``teacher_groups``). Teachers whose stage report is readable are skipped (unless ``overwrite``), and each group's
files are written when its run ends, so an interrupted run loses at most the group in progress.
The stage's record in ``stage_table`` says which marker, which writer callback and which
default ensemble size; nothing registers itself at import time.

``PateCLI`` (public Lightning API only) parses the stage's config with ``LightningCLI(run=False)``;
for each group the same config, restricted to the group, is instantiated again with the parser's
``instantiate_classes`` and ``build_trainer`` makes a fresh ``Trainer(**kwargs)`` with the stage's writer.
"""

from __future__ import annotations

import copy
import logging
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from pate_lightning import layout
from pate_lightning.pipeline import stage_table, summary
from pate_lightning.pipeline.finite_settings import check_finite_settings
from pate_lightning.pipeline.group_checkpoint import LAST, GroupCheckpoint, resumable
from pate_lightning.errors import OneParagraphParser, PateError
from pate_lightning.io import marker_settings
from pate_lightning.pipeline import teacher_parallel, teacher_settings
from pate_lightning.pipeline.teacher_groups import Progress, default_ensemble_size, pending_teachers, teacher_groups
from pate_lightning.pipeline.stage_table import Stage
from pate_lightning.generators.families import stage_label
from pate_lightning.progress import EpochProgress

HEARTBEAT_SECONDS = 60  # a training group logs a line at most this often (a group can train for many minutes)

log = logging.getLogger(__name__)

# (teacher group, placement) -> the group's module, datamodule and Trainer keyword arguments (as configured)
GroupBuilder = Callable[[list[int], teacher_parallel.Placement], tuple[LightningModule, LightningDataModule, dict[str, Any]]]


def stage_callbacks(
    stage: Stage, method: str, run_dir: Path, group: list[int], trainer_kwargs: dict[str, Any], checkpoint_every: int,
    label: Optional[str] = None,
) -> list[Callback]:
    """What the runner adds to a group's Trainer: (fit) a heartbeat, the stage's exporter, then (fit) its group
    checkpoint. ``label`` names the stage in the heartbeat (``families.stage_label``; default the stage's name).

    May set ``trainer_kwargs["enable_checkpointing"]`` to False so Lightning adds no per-epoch ModelCheckpoint.
    """
    callbacks: list[Callback] = []
    if method == "fit":
        callbacks.append(EpochProgress(f"{label or stage.name} teachers {group}", every_seconds=HEARTBEAT_SECONDS))
    if stage.writer is not None and not stage.writer_from_config:
        callbacks.append(stage.writer_class()(run_dir))
    if method == "fit" and trainer_kwargs.get("enable_checkpointing") is not False:
        # after the exporter, so each checkpoint holds the history of the epoch it ends
        callbacks.append(GroupCheckpoint(layout.checkpoints_dir(run_dir, stage.name, group), checkpoint_every))
        if not any(isinstance(c, ModelCheckpoint) for c in trainer_kwargs.get("callbacks") or []):
            trainer_kwargs["enable_checkpointing"] = False
    return callbacks


def require_writer(stage: Stage, trainer: Trainer) -> None:
    """A stage whose table entry names a writer never runs without it: it would finish and write nothing."""
    writer = stage.writer_class()
    if writer is not None and not any(isinstance(c, writer) for c in trainer.callbacks):
        where = "the config's trainer.callbacks must list it" if stage.writer_from_config else "the runner adds it"
        raise PateError(
            f"stage {stage.name}: the Trainer has no {writer.__name__}, so no teacher's files would be written "
            f"({where}; see {stage.config})."
        )


def build_trainer(stage: Stage, method: str, run_dir: Path, group: list[int], trainer_kwargs: dict[str, Any],
                  checkpoint_every: int, label: Optional[str] = None) -> Trainer:
    """The group's Trainer: the configured callbacks, then the stage's; checked to hold the stage's writer."""
    kwargs = dict(trainer_kwargs)
    extra = stage_callbacks(stage, method, run_dir, group, kwargs, checkpoint_every, label)
    kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + extra
    trainer = Trainer(**kwargs)
    require_writer(stage, trainer)
    return trainer


def run_stage(
    method: str, model: LightningModule, data: LightningDataModule, trainer_config: dict[str, Any],
    build_group: GroupBuilder, overwrite: bool = False, ensemble_size: Optional[int] = None,
    checkpoint_every: int = 10, ckpt_path: Optional[str] = None, return_predictions: bool = False,
) -> None:
    """Run ``method`` (fit or predict) of ``model``'s stage over the teachers ``data`` selects, group by group.

    ``model`` and ``data`` are the configured instances (every teacher); ``build_group`` makes the
    instances of one group. Teachers are shared out over Lightning's launchers (teacher-parallel).
    """
    stage = stage_table.of_module(model)
    if ensemble_size is not None and ensemble_size < 1:
        raise ValueError(f"ensemble_size must be >= 1 (teachers stacked per step) or null, got {ensemble_size}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every_n_epochs must be >= 1, got {checkpoint_every}")
    if method != stage.kind:
        raise PateError(f"stage {stage.name} runs with `pate-lightning {stage.kind}`, not {method} ({stage.config}).")
    strategy = trainer_config.get("strategy")
    if strategy not in (None, "auto") and teacher_parallel.is_global_zero():
        log.warning(
            "[%s] --trainer.strategy %s is not used: teachers share no weights, so they are trained teacher-parallel "
            "(each process trains its own teachers on one device and no gradient is averaged across teachers); "
            "--trainer.devices N runs N such processes.", stage.name, strategy if isinstance(strategy, str) else type(strategy).__name__,
        )
    data.prepare_data()
    data.setup(method)
    run_dir = data.run_dir

    settings = teacher_settings.output_settings(model.hparams, data.hparams, trainer_config)
    # fast_dev_run checks that a stage runs; what it writes is not a teacher's outputs and must not count as done
    trial = bool(trainer_config.get("fast_dev_run"))

    def plan() -> list[int]:
        """Run once (rank 0), before any rank writes, so every rank shares out the same teachers."""
        todo = pending_teachers(stage.name, run_dir, data.selected, overwrite, settings)
        skipped = len(data.selected) - len(todo)
        if skipped:
            log.info("[%s] %d teachers already done, skipped (use --overwrite true to redo)", stage.name, skipped)
        return todo

    def work(placement: teacher_parallel.Placement, todo: list[int]) -> list[int]:
        mine = placement.share(todo)
        size = ensemble_size if ensemble_size is not None else default_ensemble_size(placement.accelerator, stage.name)
        groups = teacher_groups(mine, {t: len(data.shards[t]) for t in mine}, size)
        name = stage_label(stage.name, data.hparams.get("dataset", ""))
        label = name if placement.world_size == 1 else f"{name} rank {placement.global_rank}"
        progress = Progress(label, len(mine))
        for group in groups:
            group_model, group_data, trainer_kwargs = build_group(group, placement)
            # the public prior's heartbeat said `teacher_vae teachers [0]` beside its `[public_prior]` lines
            trainer = build_trainer(stage, method, run_dir, group, trainer_kwargs, checkpoint_every, label=name)
            if method == "fit":
                resume = _resume(stage, run_dir, group, group_model, group_data, ckpt_path)
                # a checkpoint is a pickle: only tensors and plain containers are unpickled (weights_only);
                # the writer's done-markers record the settings in the same write (io.write_marker)
                with marker_settings(settings):
                    trainer.fit(group_model, datamodule=group_data, ckpt_path=resume, weights_only=True)
                if not pending_teachers(stage.name, run_dir, group, False):
                    # the group's files are written; its checkpoint is only for a group still training
                    folder = layout.checkpoints_dir(run_dir, stage.name, group)
                    shutil.rmtree(folder, ignore_errors=True)
                    _remove_empty(folder.parent, stop=Path(run_dir))
            else:
                # a given checkpoint gets fit's check: teachers [2, 3] decoded with teachers 0 and 1's weights
                given = _resume(stage, run_dir, group, group_model, group_data, ckpt_path) if ckpt_path else None
                with marker_settings(settings):
                    trainer.predict(group_model, datamodule=group_data, return_predictions=return_predictions,
                                    ckpt_path=given, weights_only=True)
            if trial:
                for teacher_id in group if stage.done_marker else []:
                    stage.done_marker(Path(run_dir), teacher_id).unlink(missing_ok=True)
                log.info("[%s] teachers %s: fast_dev_run, so not marked done", stage.name, group)
            log.info(progress.advance(len(group)))
        return mine

    placement, _ = teacher_parallel.launch(trainer_config, plan, work)
    if placement.global_rank == 0:
        summary.record_stage(run_dir, stage.name, data.selected, world_size=placement.world_size)


def _resume(
    stage: Stage, run_dir: Path, group: list[int], model: LightningModule, data: LightningDataModule,
    ckpt_path: Optional[str],
) -> Optional[str]:
    """``ckpt_path``, else the group's ``last.ckpt`` when it was interrupted after a checkpoint; either must hold
    this group's teachers, trained with these settings."""
    if ckpt_path is not None:
        if not Path(ckpt_path).is_file():
            raise PateError("--ckpt_path: checkpoint not found. Check the path.", ckpt_path)
        resumable(Path(ckpt_path), model, data)
        return ckpt_path
    path = layout.checkpoints_dir(run_dir, stage.name, group) / LAST
    if not resumable(path, model, data):
        return None
    log.info("[%s] teachers %s: resuming from %s", stage.name, group, path)
    return str(path)


def _remove_empty(folder: Path, stop: Path) -> None:
    """Removes ``folder`` and its empty parents up to (not including) ``stop``: no empty checkpoint tree is left."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        try:
            folder.rmdir()
        except OSError:  # another teacher-parallel process just wrote into it, or removed it first
            return
        folder = folder.parent


class PateArgumentParser(OneParagraphParser, LightningArgumentParser):
    """LightningCLI's parser; a value of the wrong type is one paragraph naming the setting, not the usage
    and a block per type of every Union around it."""


class PateCLI(LightningCLI):
    """``PateCLI(["fit", "--config", "configs/teacher_vae.yaml", ...])`` runs the stage; ``run=False`` only parses.

    Args:
        args: the command (``fit`` or ``predict``) followed by its options; default ``sys.argv[1:]``.
        run: run the stage over every selected teacher (``run_stage``) right away.
    """

    def __init__(self, args: Optional[list[str]] = None, run: bool = True) -> None:
        argv = list(sys.argv[1:] if args is None else args)
        if not argv or argv[0] not in stage_table.LIGHTNING_KINDS:
            raise PateError(f"PateCLI runs {' or '.join(stage_table.LIGHTNING_KINDS)} stages; got {argv[:1] or 'no command'}.")
        self.method = argv[0]
        # LightningCLI warns when given both args and sys.argv; sys.argv must stay intact
        # because the teacher-parallel launcher re-runs it in child processes.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
        try:
            self._parse(argv)
        except MisconfigurationException as error:
            # --trainer.accelerator gpu on a machine without one, devices 0, max_epochs -5: Lightning's reason
            # in one paragraph, exit 2, with advice that fits it (accelerator advice only for a device problem)
            trainer = getattr(getattr(self, "config", None), "trainer", None)
            chosen = f" (accelerator {trainer.accelerator!r}, devices {trainer.devices!r})" if trainer is not None else ""
            reason = str(error).rstrip(".!")
            if "devices" in reason:
                advice = "Lightning refuses them", "Give devices (--trainer.devices) a count of at least 1, or auto."
            elif any(word in reason.lower() for word in ("accelerator", "gpu", "cuda", "mps", "tpu", "available")):
                advice = "Lightning cannot run them on this machine", (
                    "Use --trainer.accelerator cpu, or auto to use a GPU only where there is one.")
            else:
                advice = "Lightning refuses them", f"Change the setting it names (pate-lightning {self.method} --help)."
            raise PateError(f"trainer settings{chosen}: {advice[0]}: {reason}. {advice[1]}") from None
        if run:
            self.run_stage()

    def _parse(self, argv: list[str]) -> None:
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=None,
            parser_class=PateArgumentParser,
            seed_everything_default=42,
            auto_configure_optimizers=False,
            # hparams must be the arguments each group was built with, not the parsed config
            load_from_checkpoint_support=False,
            trainer_defaults={"logger": False},
            parser_kwargs={"prog": f"pate-lightning {self.method}"},
            args=argv[1:],
            run=False,
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        try:
            return super().instantiate_trainer(**kwargs)
        except TypeError as error:  # Lightning's check of a value of the wrong kind (devices 'abc' on a CPU)
            raise MisconfigurationException(str(error)) from None

    def before_instantiate_classes(self) -> None:
        check_finite_settings(self.config)  # .nan/.inf settings train to NaN and publish non-JSON reports

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--overwrite", type=bool, default=False, help="Redo teachers whose outputs exist.")
        parser.add_argument(
            "--ensemble_size", type=Optional[int], default=None,
            help="Teachers stacked in one optimizer step (default: per stage and accelerator, stage_table.py).",
        )
        parser.add_argument(
            "--checkpoint_every_n_epochs", type=int, default=10,
            help="fit: how often a training group's last.ckpt is replaced; a rerun resumes the group from it.",
        )
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="Checkpoint every group starts from.")
        parser.add_argument(
            "--return_predictions", type=bool, default=False,
            help="predict: also keep every decoded batch in memory (the stage's writer callback consumes them).",
        )

    def run_stage(self) -> None:
        """Every selected teacher, group by group (see ``run_stage``)."""
        run_stage(
            self.method, self.model, self.datamodule, vars(self.config.trainer), self.instantiate_group,
            overwrite=self.config.overwrite, ensemble_size=self.config.ensemble_size,
            checkpoint_every=self.config.checkpoint_every_n_epochs, ckpt_path=self.config.ckpt_path,
            return_predictions=self.config.return_predictions,
        )

    def instantiate_group(
        self, group: list[int], placement: teacher_parallel.Placement
    ) -> tuple[LightningModule, LightningDataModule, dict[str, Any]]:
        """The group's module, datamodule and Trainer arguments, instantiated from the config restricted to ``group``."""
        config = copy.deepcopy(self.config)
        config.model.init_args.teacher_ids = group
        config.data.init_args.teacher_ids = group
        init = self.parser.instantiate_classes(config)
        # the Trainer itself is not instantiated by the parser: its arguments, callbacks instantiated
        return init.model, init.data, {**vars(init.trainer), **placement.device_kwargs()}
