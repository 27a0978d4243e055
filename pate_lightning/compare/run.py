"""Run one route for ``compare``: its shared stages once through the pipeline, then its last stage per replicate.

The last stage (``pate``, or the ``dp_sgd_student`` baseline) runs in ``{out}/{route}/replicate_{k}`` with
fresh noise and a fresh student, reading the classifiers and the synthetic pool the route's stages wrote, so
replicates never retrain a classifier or a generator. A replicate whose report exists is done and is not
rerun (its report is written last, atomically). The votes of the first replicate are copied to the next
ones: votes are deterministic functions of the teachers and queries, and the cache checks both.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from pate_lightning import layout
from pate_lightning.io import read_json
from pate_lightning.pate.publish import read_privacy_stages
from pate_lightning.pipeline import stage_table
from pate_lightning.pipeline.chain import STAGES, Pipeline, call_command, command_stage_args, stage_run_dir

log = logging.getLogger(__name__)

FINAL_STAGES = ("pate", "dp_sgd_student")  # a route ends in one of these; it is what a replicate repeats


def final_stage(config: dict[str, Any]) -> str:
    """The route's last stage: dp_sgd_student when the config has its section, else pate."""
    return "dp_sgd_student" if "dp_sgd_student" in config else "pate"


def replicate_report(out_dir: Path, name: str, replicate: int, final: str) -> Path:
    folder = layout.replicate_dir(out_dir, name, replicate)
    return layout.dp_sgd_student_report_file(folder) if final == "dp_sgd_student" else layout.pate_report_file(folder)


def _pool(config: dict[str, Any], settings: dict[str, Any]) -> Optional[Path]:
    """The synthetic pool a pate stage reads (its setting, else what the route's combine stage wrote)."""
    if settings.get("query_source", "mnist_test") != "synthetic":
        return None
    if settings.get("synthetic_samples"):
        return Path(settings["synthetic_samples"]).resolve()
    combine = stage_table.get("combine")
    out = (config.get("combine") or {}).get("out_dir")
    return layout.combined_file(layout.synthetic_dir(stage_run_dir(combine, config), out), "combined", "samples.pt").resolve()


def replicate_settings(config: dict[str, Any], final: str, folder: Path) -> tuple[dict[str, Any], Optional[Path]]:
    """The final stage's settings for one replicate folder, with its inputs made absolute; and its pool."""
    stage = stage_table.get(final)
    settings = command_stage_args(stage, config, stage.load_target())
    route_dir = stage_run_dir(stage, config)
    settings["run_dir"] = str(folder)
    if final == "dp_sgd_student":
        return settings, None
    settings["teachers_dir"] = str(layout.classifiers_root(route_dir, settings.get("teachers_dir", layout.TRAINED_NETS)).resolve())
    pool = _pool(config, settings)
    if pool is not None:
        settings["synthetic_samples"] = str(pool)
    return settings, pool


def run_route(config_path: Path, out_dir: Path, replicates: int) -> tuple[list[dict[str, Any]], Optional[list], dict[str, float]]:
    """The route's replicate report entries, its pool's privacy stages and the wall seconds of its shared stages."""
    name = config_path.stem
    pipeline = Pipeline(config_path)
    final = final_stage(pipeline.config)
    shared = [s.name for s in STAGES if s.name not in FINAL_STAGES
              and (pipeline.config.get("stages") is None or s.name in pipeline.config["stages"])]
    log.info("[compare] %s: shared stages %s", name, shared)
    pipeline.config["stages"] = shared
    state = pipeline.run()
    seconds = {stage: state[stage]["seconds"] for stage in shared if stage in state and "seconds" in state[stage]}
    runs, pool = [], None
    for replicate in range(replicates):
        folder = layout.replicate_dir(out_dir, name, replicate)
        report = replicate_report(out_dir, name, replicate, final)
        settings, pool = replicate_settings(pipeline.config, final, folder)
        if report.is_file():
            log.info("[compare] %s replicate %d/%d: done, kept", name, replicate + 1, replicates)
        else:
            _copy_votes(layout.replicate_dir(out_dir, name, 0), folder)
            log.info("[compare] %s replicate %d/%d: running %s", name, replicate + 1, replicates, final)
            started = time.perf_counter()
            call_command(stage_table.get(final).load_target(), settings)
            log.info("[compare] %s replicate %d/%d: %.0f s", name, replicate + 1, replicates, time.perf_counter() - started)
        runs.append(read_json(report)["runs"][-1])
    stages = read_privacy_stages(pool) if pool is not None else None
    return runs, stages, seconds


def _copy_votes(first: Path, folder: Path) -> None:
    # the un-noised vote counts live under the replicate's private/ folder, never beside its report
    if first == folder or not layout.private_dir(first).is_dir():
        return
    for votes in layout.private_dir(first).glob("votes_*.pt"):
        target = layout.private_dir(folder) / votes.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(votes, target)
