"""A fast_dev_run checks that stages run; nothing it writes may pass for the run's outputs on the next run."""

from __future__ import annotations

import json

import yaml

from pate_lightning import layout
from pate_lightning.pipeline.chain import Pipeline
from tests.faults.test_stale_state import FakeStages
from tests.test_pipeline import tiny_config


def test_a_fast_dev_run_stage_and_those_after_it_are_not_recorded_as_done(tmp_path, monkeypatch):
    """pipeline_state.json said done, so the next run skipped the stage and every stage after it; rerun, they
    redo their teachers (overwrite): the stages after the trial stamped done-markers on its outputs."""
    path, config = tiny_config(tmp_path)
    config["teacher_vae"]["trainer"] = {**config["teacher_vae"]["trainer"], "fast_dev_run": True}  # its own dict
    path.write_text(yaml.safe_dump(config))
    FakeStages(monkeypatch)
    Pipeline(path).run()
    state = json.loads(layout.pipeline_state_file(tmp_path / "run").read_text())
    assert state["teacher_classifier"]["status"] == "done"
    assert {state[name]["status"] for name in ("teacher_vae", "generate", "evaluate", "combine", "pate")} == {"trial"}
    rerun = FakeStages(monkeypatch)
    Pipeline(path).run()
    # teacher_vae and generate by stage name, the commands by function name (evaluate_command, ...)
    assert [name.removesuffix("_command") for name, _ in rerun.calls] == ["teacher_vae", "generate", "evaluate", "combine", "pate"]
    assert all(overwrite for _, overwrite in rerun.calls[:2])
