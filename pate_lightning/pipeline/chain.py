"""``pate-lightning pipeline``: every stage in order from one config, skipped when already done.

Each stage's settings (its section of the pipeline config merged over its base config, plus the
shared keys) are hashed together with the previous stage's hash and recorded in
``pipeline_state.json`` next to the outputs. A stage whose hash matches a finished run is
skipped; a changed stage re-runs with ``overwrite`` and so do the stages after it (their hashes
chain). A stage that stopped half-way re-runs without ``overwrite``, so finished teachers are
kept and the run continues where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Literal, Optional, Union

import yaml

from pate_lightning import layout
from pate_lightning.pipeline import stage_table
from pate_lightning.errors import PateError, parse_error_text
from pate_lightning.io import exclusive_lock, read_json, sha256_json, write_json, write_text
from pate_lightning.pipeline.stage_table import Stage

log = logging.getLogger(__name__)

SHARED_KEYS = ("run_dir", "data_dir", "dataset", "num_teachers", "teacher_ids", "accelerator", "devices", "ensemble_size",
               "stages", "run_dirs")
STAGES = stage_table.PIPELINE_STAGES
STAGE_NAMES = [s.name for s in STAGES]
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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
    return check_keys(config, path)


def check_keys(config: dict[str, Any], where: str | Path) -> dict[str, Any]:
    unknown = set(config) - set(SHARED_KEYS) - set(STAGE_NAMES)
    if unknown:
        raise PateError(f"unknown keys {sorted(unknown)}; allowed: shared {list(SHARED_KEYS)} and stages {STAGE_NAMES}.", where)
    # a route runs some stages only (real queries need no generator) and may share a stage's outputs with other
    # routes by running it in a common folder, where its done-markers let the next route skip finished teachers
    named = list(config.get("stages") or []) + list(config.get("run_dirs") or {})
    if not isinstance(config.get("run_dirs") or {}, dict) or set(named) - set(STAGE_NAMES):
        raise PateError(f"stages (a list) and run_dirs (stage: folder) may name only the stages {STAGE_NAMES}; "
                        f"got {sorted(map(str, set(named) - set(STAGE_NAMES)))}.", where)
    return config


def stage_run_dir(stage: Stage, config: dict[str, Any]) -> Path:
    """Where ``stage`` writes: its entry in ``run_dirs`` (outputs shared between routes), else ``run_dir``."""
    return Path((config.get("run_dirs") or {}).get(stage.name, config.get("run_dir", ".")))


def lightning_stage_config(stage: Stage, config: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """The stage's full LightningCLI config: base file, then its pipeline section, then shared keys."""
    # the stage's default config relative to configs/ (e.g. generators/public_prior.yaml): beside the pipeline
    # config when it has its own copy, else the repository's configs/ (so a pipeline config may live anywhere)
    relative = Path(stage.config).relative_to("configs")
    base_path = next((p for p in (config_dir / relative, REPO_CONFIGS / relative) if p.is_file()), config_dir / relative)
    if not base_path.is_file():
        raise PateError(f"base config of stage {stage.name} not found here nor in {REPO_CONFIGS}.", base_path)
    section = dict(config.get(stage.name) or {})
    allow_private = bool(section.pop("allow_private_prior", False))  # a pipeline setting, not the stage's
    merged = deep_merge(yaml.safe_load(base_path.read_text()), section)
    data = merged.setdefault("data", {})
    data_args = data.setdefault("init_args", {})
    if stage.name == "public_prior" and not allow_private:
        check_public_prior(data_args.get("dataset"))
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


def check_public_prior(dataset: Any) -> None:
    """The public prior must read public data only: on MNIST it reads every shard without DP."""
    from pate_lightning.generators.families import PUBLIC_DATASETS

    if dataset not in PUBLIC_DATASETS:
        raise PateError(
            f"stage public_prior: dataset {dataset!r} is not public (public: {list(PUBLIC_DATASETS)}); a prior trained "
            "on it reads the private data without DP and leaves every later epsilon unbounded. Choose a public dataset, "
            "or set public_prior: {allow_private_prior: true} to accept that (the report then says unbounded)."
        )


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

    def __init__(
        self, config_path: str | Path, from_stage: Optional[str] = None, run_dir: Optional[str] = None,
        overrides: Optional[dict[str, Any]] = None,
    ) -> None:
        if from_stage is not None and from_stage not in STAGE_NAMES:
            raise ValueError(f"unknown stage {from_stage!r}; choose one of {STAGE_NAMES}")
        self.config_path = Path(config_path)
        self.config = check_keys(deep_merge(load_config(self.config_path), overrides or {}), "the command line")
        if run_dir is not None:
            self.config["run_dir"] = run_dir
        self.config.setdefault("run_dir", ".")
        self.run_dir = Path(self.config["run_dir"])
        self.from_stage = from_stage
        from pate_lightning.pipeline.teacher_parallel import is_global_zero

        # False in a teacher-parallel process other than the first (it re-runs this command; see run())
        self.rank_zero = is_global_zero()

    def _state(self) -> dict[str, Any]:
        path = layout.pipeline_state_file(self.run_dir)
        state = read_json(path) if path.exists() else {}
        if not isinstance(state, dict):
            raise PateError("is not a JSON object of stage records; delete it to rerun every stage.", path)
        return state

    def run(self) -> dict[str, Any]:
        rank_zero = self.rank_zero
        state = self._state()
        previous_hash = legacy_previous = ""
        forced = False
        trial = False  # a fast_dev_run stage, or one after it: what it writes is a trial, not the run's outputs
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
                trial = trial or bool((settings.get("trainer") or {}).get("fast_dev_run"))
            digest = stage_hash(stage.name, settings, previous_hash)
            # runs recorded before the hash left the run folder out still count as up to date where they are
            legacy_previous = stage_hash(stage.name, settings, legacy_previous, keep_location=True)
            previous_hash = digest
            if not rank_zero and stage.kind == "command":
                # another teacher-parallel process: it re-runs the pipeline only to train its share of the
                # fit/predict stages; a command (votes, student, reports) runs once, in rank 0
                continue
            record = state.get(stage.name, {})
            if not forced and record.get("hash") in (digest, legacy_previous) and record.get("status") == "done":
                log.info("[pipeline %d/%d] %s: up to date, skipped", number, len(STAGES), stage.name)
                continue
            # a changed (or forced) stage redoes its teachers; an interrupted one continues, and an interrupted
            # overwrite stays one (the old config's done-markers would otherwise pass for the new one's)
            interrupted_overwrite = record.get("status") == "running" and record.get("overwrite") is True
            # a trial's outputs are redone: stages after a fast_dev_run stamped done-markers on its outputs
            overwrite = (forced or interrupted_overwrite or record.get("status") == "trial"
                         or record.get("hash") not in (None, digest, legacy_previous))
            log.info("[pipeline %d/%d] %s: running%s (elapsed %.0fs)", number, len(STAGES), stage.name,
                     " (overwrite)" if overwrite else "", time.perf_counter() - started)
            state[stage.name] = {"hash": digest, "status": "running", "overwrite": overwrite}
            if rank_zero:
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
            if trial:
                log.info("[pipeline] %s: a fast_dev_run (or after one), so not recorded as done", stage.name)
            state[stage.name] = {
                "hash": digest, "status": "trial" if trial else "done", "seconds": round(time.perf_counter() - stage_started, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": record.get("runs", 0) + 1,
            }
            if rank_zero:
                write_json(layout.pipeline_state_file(self.run_dir), state)
            forced = forced or overwrite  # stages after a re-run one see new inputs
        if rank_zero:
            log.info("[pipeline] all stages %s in %.0fs", "ran as a trial (fast_dev_run)" if trial else "done",
                     time.perf_counter() - started)
        return state


LOCATION_KEYS = ("run_dir",)  # where a run lives, not what it computes: a moved or copied run is the same run


def stage_hash(name: str, settings: dict[str, Any], previous: str, keep_location: bool = False) -> str:
    """A stage's settings hash, chained to the previous stage's; location keys left out (unless ``keep_location``).

    >>> stage_hash("combine", {"run_dir": "a", "seed": 1}, "") == stage_hash("combine", {"run_dir": "b", "seed": 1}, "")
    True
    """
    kept = settings if keep_location else without_keys(settings, LOCATION_KEYS)
    return sha256_json({"stage": name, "settings": kept, "previous": previous})


def without_keys(obj: Any, keys: tuple[str, ...]) -> Any:
    """``obj`` with ``keys`` removed from every nested dict.

    >>> without_keys({"run_dir": "x", "data": {"init_args": {"run_dir": "y", "seed": 1}}}, ("run_dir",))
    {'data': {'init_args': {'seed': 1}}}
    """
    if isinstance(obj, dict):
        return {k: without_keys(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without_keys(v, keys) for v in obj]
    return obj


def run_lightning_stage(stage: Stage, settings: dict[str, Any], run_dir: Path, overwrite: bool) -> None:
    """A fit/predict stage from its merged config, written beside the outputs first (for inspection and reruns)."""
    from pate_lightning.pipeline.runner import PateCLI

    stage_file = layout.pipeline_stage_config(run_dir, stage.name)
    write_text(stage_file, yaml.safe_dump(settings, sort_keys=False))
    PateCLI([stage.kind, "--config", str(stage_file), f"--overwrite={str(overwrite).lower()}"])


def call_command(function: Callable[..., Any], settings: dict[str, Any]) -> Any:
    """Call a command with settings checked and converted by jsonargparse, as its CLI would."""
    from jsonargparse import ArgumentParser

    from pate_lightning.pipeline.finite_settings import check_finite_settings

    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(function, as_positional=False)
    try:
        config = parser.parse_object(settings)
    except Exception as error:  # jsonargparse's ArgumentError: an unknown key or a value of the wrong type
        raise PateError(f"invalid settings for {function.__name__}: {parse_error_text(str(error))}") from None
    check_finite_settings(config)
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


# the spellings before the flags took jsonargparse's style
OLD_SPELLINGS = {"--from": "--from_stage", "--no-summary": "--summary=false"}
SHARED_TYPES: dict[str, Any] = {
    "run_dir": Optional[str], "data_dir": Optional[str], "dataset": Optional[str], "num_teachers": Optional[int],
    "teacher_ids": Optional[list[int]], "accelerator": Optional[str], "devices": Optional[Union[int, str, list[int]]],
    "ensemble_size": Optional[int],
}


def pipeline_parser() -> Any:
    """``pate-lightning pipeline --config FILE [--from_stage NAME] [--summary false] [--print_config]
    [--<shared key> VALUE] [--<stage>.<key>... VALUE]`` (jsonargparse; stage keys are split off first)."""
    from pate_lightning.pipeline.finite_settings import FiniteSettingsParser

    parser = FiniteSettingsParser(
        prog="pate-lightning pipeline", description=__doc__.splitlines()[0],
        epilog="--print_config prints the config with every override applied, and exits. Any stage's setting: "
        "--<stage>.<key>... VALUE (VALUE as YAML), e.g. --teacher_vae.trainer.max_epochs 3. Stage base configs "
        "are read beside the pipeline config, else from the repository's configs/.",
    )
    parser.add_argument("--config", type=str, required=True, help="pipeline YAML, anywhere (e.g. configs/demo.yaml)")
    parser.add_argument("--from_stage", type=Optional[Literal[tuple(STAGE_NAMES)]], default=None,
                        help="re-run from this stage on")
    parser.add_argument("--summary", type=bool, default=True, help="print the closing table and write the pictures")
    parser.add_argument("--diagnostics", type=bool, default=False,
                        help="the closing table also shows values read from the shards without noise, marked [diag] "
                             "(not for release), and writes their loss curves under private/figures")
    for key, kind in SHARED_TYPES.items():
        parser.add_argument(f"--{key}", type=kind, default=None, help=f"override the config's {key}")
    return parser


def pipeline_arguments(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """The parsed flags, and the overrides of the config (shared keys and ``--<stage>.<key>`` settings).

    >>> args, overrides = pipeline_arguments(["--config", "c.yaml", "--pate.student.epochs=3", "--devices", "2"])
    >>> overrides
    {'devices': 2, 'pate': {'student': {'epochs': 3}}}
    """
    # --print_config: the pipeline config with every override applied (taken off here: jsonargparse
    # reserves the name for its own config files, which a pipeline config is not)
    print_config = "--print_config" in argv
    argv = [token for token in argv if token != "--print_config"]
    rest: list[str] = []
    stage_settings: dict[str, Any] = {}
    tokens = iter(OLD_SPELLINGS.get(token, token) for token in argv)
    for token in tokens:
        name, equals, value = token[2:].partition("=")
        if token.startswith("--") and name.split(".")[0] in STAGE_NAMES and "." in name:
            text = value if equals else next(tokens, "")
            nested: Any = yaml.safe_load(text) if text else None  # a value as YAML, as in the config file
            for part in reversed(name.split(".")):
                nested = {part: nested}
            stage_settings = deep_merge(stage_settings, nested)
        else:
            rest.append(token)
    args = pipeline_parser().parse_args(rest)
    args.print_config = print_config
    overrides = {key: getattr(args, key) for key in SHARED_TYPES if getattr(args, key) is not None}
    return args, deep_merge(overrides, stage_settings)


def pipeline_main(argv: list[str]) -> None:
    args, overrides = pipeline_arguments(argv)
    pipeline = Pipeline(args.config, args.from_stage, overrides=overrides)
    if args.print_config:
        print(yaml.safe_dump(pipeline.config, sort_keys=False), end="")
        return
    with run_lock(pipeline.run_dir, pipeline.rank_zero):
        pipeline.run()
        if args.summary and pipeline.rank_zero:
            from pate_lightning.pipeline.run_report import print_run_report

            print_run_report(pipeline.run_dir, diagnostics=args.diagnostics)


def run_lock(run_dir: Path, rank_zero: bool) -> ContextManager[None]:
    """One pipeline per run folder. The other teacher-parallel processes (they re-run this command to train
    their share of the teachers) work under the lock of the first."""
    if not rank_zero:
        return contextlib.nullcontext()
    return exclusive_lock(layout.run_lock_file(run_dir), run_dir)
