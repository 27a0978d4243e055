"""``PateCLI``: a fit/predict stage parsed from its config by LightningCLI and run teacher group by group.

Public Lightning API only: ``LightningCLI(run=False)`` parses the config and instantiates the
classes once (every selected teacher); for each teacher group the same config, restricted to the
group, is instantiated again with the parser's ``instantiate_classes`` and the runner builds a
fresh ``Trainer(**kwargs)`` with the stage's writer callback from ``stage_table``.
"""

from __future__ import annotations

import copy
import sys
import warnings
from typing import Any, Optional

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from pate_lightning import runner, stage_table
from pate_lightning.errors import PateError
from pate_lightning.parallel import teacher_parallel


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
            args=argv[1:],
            run=False,
        )
        if run:
            self.run_stage()

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
        """Every selected teacher, group by group (see ``runner.run_stage``)."""
        runner.run_stage(
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
