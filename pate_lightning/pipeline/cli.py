"""The ``pate-lightning`` command: ``pate-lightning COMMAND [--config FILE] [--key value ...]``.

Every command and stage is a record of ``stage_table``. ``fit``/``predict`` run a stage's
LightningCLI config teacher group by teacher group (``runner.PateCLI``, ``runner.run_stage``);
the other commands are plain functions parsed by jsonargparse, so they take ``--config`` files
too; ``pipeline`` chains the stages. Flags are jsonargparse's everywhere: ``--name value``,
booleans as ``--overwrite true``. Nothing heavy is imported before a command is chosen, so
``--help`` is fast.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional

from pate_lightning.pipeline import stage_table
from pate_lightning.errors import PateError, user_message
from pate_lightning.warning_filters import quiet_known_warnings

log = logging.getLogger("pate_lightning")

PIPELINE_HELP = "every stage in order, each skipped when up to date"


def usage() -> str:
    """The top-level help: every command, one line each, in data-flow order (from the stage table)."""
    lines = [
        "usage: pate-lightning COMMAND [--config FILE] [--key value ...] [--verbose]",
        "       pate-lightning COMMAND --help     (the command's settings; booleans as --key true/false)",
        "",
        "commands, in data-flow order (with their default config):",
    ]
    rows = [(stage.command, stage.config or "", stage.help) for stage in stage_table.STAGES]
    rows.append(("pipeline", "configs/demo.yaml", PIPELINE_HELP))
    lines += [f"  {command:<14} {config:<32} {text}" for command, config, text in rows]
    lines += ["", "--verbose: debug logging and full tracebacks (also PATE_DEBUG=1)."]
    return "\n".join(lines)


def _configure_logging(verbose: bool) -> None:
    # Lightning sets its loggers' levels and handlers when first imported: import it first, then quieten it
    import lightning.pytorch  # noqa: F401

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    if not verbose:
        for noisy in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def run_command(name: str, argv: list[str]) -> None:
    """A plain command (``stage_table.COMMANDS``) with its settings from ``argv`` (and ``--config`` files)."""
    from jsonargparse import CLI

    from pate_lightning.pipeline.finite_settings import FiniteSettingsParser

    if stage_table.COMMANDS[name].own_parser:
        return stage_table.COMMANDS[name].load_target()(argv)
    CLI(stage_table.COMMANDS[name].load_target(), args=argv, as_positional=False, prog=f"pate-lightning {name}",
        parser_class=FiniteSettingsParser)


def cli_main(args: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    _configure_logging(verbose)
    quiet_known_warnings(verbose)
    # Lightning's own check of a Trainer setting (devices 0, max_epochs -5) is a bad setting like ours
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        if argv[0] == "pipeline":
            from pate_lightning.pipeline.chain import pipeline_main

            pipeline_main(argv[1:])
        elif argv[0] in stage_table.COMMANDS:
            run_command(argv[0], argv[1:])
        elif argv[0] in stage_table.LIGHTNING_KINDS:
            from pate_lightning.pipeline.runner import PateCLI

            PateCLI(args=argv)
        else:
            print(f"pate-lightning: error: unknown command {argv[0]!r}.\n\n{usage()}", file=sys.stderr)
            sys.exit(2)
    except (PateError, ValueError, OSError, MisconfigurationException) as error:
        # PateError: bad input files; ValueError: a setting out of range (our checks name it);
        # OSError: a disk that is full or a folder that cannot be written (errors.os_error_message).
        if verbose or os.environ.get("PATE_DEBUG"):
            raise
        print(f"pate-lightning: error: {user_message(error)}", file=sys.stderr)
        sys.exit(2)
