"""``pate-lightning pipeline``: every stage in order from one config, skipped when already done.

Each stage's settings (its section of the pipeline config merged over its base config, plus the
shared keys) are hashed together with the previous stage's hash and recorded in
``pipeline_state.json`` next to the outputs. A stage whose hash matches a finished run is
skipped; a changed stage re-runs with ``overwrite`` and so do the stages after it (their hashes
chain). A stage that stopped half-way re-runs without ``overwrite``, so finished teachers are
kept and the run continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from pate_lightning import layout
from pate_lightning.pipeline import stage_table
from pate_lightning.errors import PateError
from pate_lightning.io import read_json, sha256_json, write_json, write_text
from pate_lightning.pipeline.stage_table import Stage

log = logging.getLogger(__name__)

SHARED_KEYS = ("run_dir", "data_dir", "dataset", "num_teachers", "teacher_ids", "accelerator", "devices", "ensemble_size",
               "stages", "run_dirs")
STAGES = stage_table.PIPELINE_STAGES
STAGE_NAMES = [s.name for s in STAGES]


def deep_merge(base: Any, override: Any) -> Any:
    """Dicts merge key by key; anything else in ``override`` replaces ``base``.

    >>> deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]})
    {'a': {'b': 1, 'c': 3}, 'd': [2]}
    """
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def load_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PateError("pipeline config not found.", path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PateError(f"is not valid YAML ({error}).", path) from None
    if "seed" in config:
        # a top-level seed used to be accepted and passed nowhere; each stage's seed is a setting of its own
        raise PateError(
            "a top-level seed is not a pipeline setting (it was ignored before); set the seed of each stage in its "
            "section, e.g. teacher_vae: {data: {init_args: {seed: 43}}, model: {init_args: {seed: 43}}}.", path
        )
    unknown = set(config) - set(SHARED_KEYS) - set(STAGE_NAMES)
    if unknown:
        raise PateError(f"unknown keys {sorted(unknown)}; allowed: shared {list(SHARED_KEYS)} and stages {STAGE_NAMES}.", path)
    # a route runs some stages only (real queries need no generator) and may share a stage's outputs with other
    # routes by running it in a common folder, where its done-markers let the next route skip finished teachers
    named = list(config.get("stages") or []) + list(config.get("run_dirs") or {})
    if not isinstance(config.get("run_dirs") or {}, dict) or set(named) - set(STAGE_NAMES):
        raise PateError(f"stages (a list) and run_dirs (stage: folder) may name only the stages {STAGE_NAMES}; "
                        f"got {sorted(map(str, set(named) - set(STAGE_NAMES)))}.", path)
    return config


def stage_run_dir(stage: Stage, config: dict[str, Any]) -> Path:
    """Where ``stage`` writes: its entry in ``run_dirs`` (outputs shared between routes), else ``run_dir``."""
    return Path((config.get("run_dirs") or {}).get(stage.name, config.get("run_dir", ".")))


def lightning_stage_config(stage: Stage, config: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """The stage's full LightningCLI config: base file, then its pipeline section, then shared keys."""
    # the stage's default config relative to configs/ (e.g. generators/public_prior.yaml), under config_dir
    base_path = config_dir / Path(stage.config).relative_to("configs")
    if not base_path.is_file() and config_dir.name == "routes":  # configs/routes/*.yaml use the base configs of configs/
        base_path = config_dir.parent / Path(stage.config).relative_to("configs")
    if not base_path.is_file():
        raise PateError(f"base config of stage {stage.name} not found.", base_path)
    merged = deep_merge(yaml.safe_load(base_path.read_text()), config.get(stage.name) or {})
    data = merged.setdefault("data", {})
    data_args = data.setdefault("init_args", {})
    accepted = _parameters(_import(data["class_path"])) if "class_path" in data else set()
    for key in stage.shared_data_keys:
        if key in config and key in accepted:
            data_args[key] = config[key]
    if stage.name in (config.get("run_dirs") or {}) and "run_dir" in stage.shared_data_keys and "run_dir" in accepted:
        data_args["run_dir"] = str(stage_run_dir(stage, config))
    if stage.run_dir_of is not None:
        data_args["run_dir"] = str(stage.run_dir_of(stage_run_dir(stage, config)))
    trainer = merged.setdefault("trainer", {})
    for key in ("accelerator", "devices"):
        if key in config:
            trainer[key] = config[key]
    if config.get("ensemble_size") is not None:
        merged["ensemble_size"] = config["ensemble_size"]
    return merged


def command_stage_args(stage: Stage, config: dict[str, Any], function: Callable[..., Any]) -> dict[str, Any]:
    """The command's keyword arguments: its pipeline section plus the shared keys it accepts."""
    import inspect

    accepted = inspect.signature(function).parameters
    args = {k: v for k, v in config.items() if k in SHARED_KEYS and k in accepted}
    if stage.name in (config.get("run_dirs") or {}) and "run_dir" in accepted:
        args["run_dir"] = str(stage_run_dir(stage, config))
    args.update(config.get(stage.name) or {})
    unknown = set(args) - set(accepted)
    if unknown:
        raise PateError(f"stage {stage.name}: unknown settings {sorted(unknown)}; allowed: {sorted(accepted)}.")
    return args


class Pipeline:
    """Runs the stages of one pipeline config in order.

    Args:
        config_path: the pipeline YAML (stage base configs are looked up in its folder).
        from_stage: re-run this stage and every one after it, whatever the recorded state.
        run_dir: overrides the config's ``run_dir``.
    """

    def __init__(self, config_path: str | Path, from_stage: Optional[str] = None, run_dir: Optional[str] = None) -> None:
        if from_stage is not None and from_stage not in STAGE_NAMES:
            raise ValueError(f"unknown stage {from_stage!r}; choose one of {STAGE_NAMES}")
        self.config_path = Path(config_path)
        self.config = load_config(self.config_path)
        if run_dir is not None:
            self.config["run_dir"] = run_dir
        self.config.setdefault("run_dir", ".")
        self.run_dir = Path(self.config["run_dir"])
        self.from_stage = from_stage

    def _state(self) -> dict[str, Any]:
        path = layout.pipeline_state_file(self.run_dir)
        return read_json(path) if path.exists() else {}

    def run(self) -> dict[str, Any]:
        state = self._state()
        previous_hash = ""
        forced = False
        started = time.perf_counter()
        for number, stage in enumerate(STAGES, 1):
            forced = forced or stage.name == self.from_stage
            if stage.optional and stage.name not in self.config:
                continue  # e.g. public_prior: only runs that use a public generator fit one
            if self.config.get("stages") is not None and stage.name not in self.config["stages"]:
                continue  # e.g. a route on real queries: classifiers and pate, no generator
            if stage.kind == "command":
                function = stage.load_target()
                settings: dict[str, Any] = command_stage_args(stage, self.config, function)
            else:
                settings = lightning_stage_config(stage, self.config, self.config_path.parent)
            digest = sha256_json({"stage": stage.name, "settings": settings, "previous": previous_hash})
            previous_hash = digest
            record = state.get(stage.name, {})
            if not forced and record.get("hash") == digest and record.get("status") == "done":
                log.info("[pipeline %d/%d] %s: up to date, skipped", number, len(STAGES), stage.name)
                continue
            # a changed (or forced) stage redoes its teachers; an interrupted one continues
            overwrite = forced or (record.get("hash") not in (None, digest))
            log.info("[pipeline %d/%d] %s: running%s (elapsed %.0fs)", number, len(STAGES), stage.name,
                     " (overwrite)" if overwrite else "", time.perf_counter() - started)
            state[stage.name] = {"hash": digest, "status": "running"}
            write_json(layout.pipeline_state_file(self.run_dir), state)
            stage_started = time.perf_counter()
            try:
                if stage.kind == "command":
                    if "overwrite" in settings or "overwrite" in _parameters(function):
                        settings = {**settings, "overwrite": overwrite}
                    call_command(function, settings)
                else:
                    run_lightning_stage(stage, settings, self.run_dir, overwrite)
            except (PateError, ValueError) as error:
                raise PateError(f"stage {stage.name} failed: {error}") from None
            except SystemExit as exit_:
                if exit_.code not in (0, None):
                    raise PateError(f"stage {stage.name} failed (exit status {exit_.code}); see the message above.") from None
            state[stage.name] = {
                "hash": digest, "status": "done", "seconds": round(time.perf_counter() - stage_started, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": record.get("runs", 0) + 1,
            }
            write_json(layout.pipeline_state_file(self.run_dir), state)
            forced = forced or overwrite  # stages after a re-run one see new inputs
        log.info("[pipeline] all stages done in %.0fs", time.perf_counter() - started)
        return state


def run_lightning_stage(stage: Stage, settings: dict[str, Any], run_dir: Path, overwrite: bool) -> None:
    """A fit/predict stage from its merged config, written beside the outputs first (for inspection and reruns)."""
    from pate_lightning.pipeline.runner import PateCLI

    stage_file = layout.pipeline_stage_config(run_dir, stage.name)
    write_text(stage_file, yaml.safe_dump(settings, sort_keys=False))
    PateCLI([stage.kind, "--config", str(stage_file), f"--overwrite={str(overwrite).lower()}"])


def call_command(function: Callable[..., Any], settings: dict[str, Any]) -> Any:
    """Call a command with settings checked and converted by jsonargparse, as its CLI would."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(function, as_positional=False)
    try:
        config = parser.parse_object(settings)
    except Exception as error:  # jsonargparse's ArgumentError: an unknown key or a value of the wrong type
        raise PateError(f"invalid settings for {function.__name__}: {error}") from None
    init = parser.instantiate_classes(config)
    # top-level names only: nested settings (e.g. pate's StudentSettings) stay instantiated objects
    return function(**{name: init.get(name) for name in _parameters(function) if name in init})


def _import(class_path: str) -> Any:
    import importlib

    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _parameters(function: Callable[..., Any]) -> set[str]:
    import inspect

    return set(inspect.signature(function).parameters)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def pipeline_parser() -> argparse.ArgumentParser:
    """``pate-lightning pipeline --config FILE [--from_stage NAME] [--run_dir DIR] [--summary false]``."""
    parser = argparse.ArgumentParser(prog="pate-lightning pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML, e.g. configs/demo.yaml")
    # --from and --no-summary: the spellings before the flags took jsonargparse's style
    parser.add_argument("--from_stage", choices=STAGE_NAMES, help="re-run from this stage on")
    parser.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--run_dir", help="override the config's run_dir")
    parser.add_argument("--summary", type=_bool, default=True, metavar="{true,false}",
                        help="print the closing table and write the pictures (default true)")
    parser.add_argument("--no-summary", dest="summary", action="store_false", help=argparse.SUPPRESS)
    return parser


def pipeline_main(argv: list[str]) -> None:
    args = pipeline_parser().parse_args(argv)
    pipeline = Pipeline(args.config, args.from_stage, args.run_dir)
    pipeline.run()
    if args.summary:
        from pate_lightning.pipeline.run_report import print_run_report

        print_run_report(pipeline.run_dir)
