"""Every route config under configs/routes parses into valid stage settings; one runs at a handful of teachers."""

import inspect
import json

import pytest
import yaml

from pate_lightning.pipeline import stage_table
from pate_lightning.pipeline.chain import (STAGES, Pipeline, command_stage_args, lightning_stage_config, load_config,
                                           stage_run_dir)
from pate_lightning.pipeline.cli import cli_main
from tests.conftest import REPO

ROUTES = sorted((REPO / "configs/routes").glob("*.yaml"))
DEMO_250 = REPO / "configs/demo_250.yaml"  # the 250-teacher demo prototype, held to the routes' checks


def _accepted(class_path):
    cls = stage_table.load(class_path.replace(".", ":", 0) if ":" in class_path else ":".join(class_path.rsplit(".", 1)))
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            parameters = inspect.signature(klass.__init__).parameters
            names |= set(parameters)
            if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                break
    return names


def test_there_is_a_route_per_results_row():
    names = {path.stem for path in ROUTES}
    assert {"lnmax_100", "confident_gnmax_500", "public_prior_800", "public_prior_2600", "dp_sgd_hybrid",
            "hybrid_filters", "per_teacher_guide", "dp_sgd_student_eps1", "dp_sgd_student_eps8"} <= names


@pytest.mark.parametrize("path", [*ROUTES, DEMO_250], ids=lambda p: p.stem)
def test_route_settings_are_valid(path):
    config = load_config(path)
    assert config["num_teachers"] == 250 and config.get("teacher_ids") is None  # the full ensemble
    ran = [s for s in STAGES if s.name in config["stages"] and (not s.optional or s.name in config)]
    assert [s.name for s in ran] == config["stages"]  # every listed stage has what it needs to run
    for stage in ran:
        if stage.kind == "command":
            args = command_stage_args(stage, config, stage.load_target())  # unknown settings raise
            assert set(args) <= set(inspect.signature(stage.load_target()).parameters)
            continue
        merged = lightning_stage_config(stage, config, path.parent)
        for part in ("model", "data"):
            extra = set(merged[part].get("init_args", {})) - _accepted(merged[part]["class_path"])
            assert not extra, f"{stage.name}.{part}: unknown settings {sorted(extra)}"
        for callback in merged["trainer"].get("callbacks") or []:
            assert not set(callback.get("init_args", {})) - _accepted(callback["class_path"])
    # a route that reads classifiers from the shared folder finds them where the classifier stage writes
    if "pate" in config["stages"] and "teacher_classifier" in config["stages"]:
        shared = stage_run_dir(stage_table.get("teacher_classifier"), config) / "trained_nets"
        pate_dir = stage_run_dir(stage_table.get("pate"), config)
        assert (pate_dir / config["pate"].get("teachers_dir", "trained_nets")).resolve() == shared.resolve()


def test_the_250_teacher_demo_starts_its_teachers_from_the_public_classifier():
    public = yaml.safe_load((REPO / "configs/demo_public_classifier.yaml").read_text())
    assert public["data"]["init_args"]["dataset"] == "font_digits_small"  # public renders, never MNIST
    start = load_config(DEMO_250)["teacher_classifier"]["model"]["init_args"]["public_init"]
    assert start == public["data"]["init_args"]["run_dir"] + "/trained_nets"


@pytest.mark.integration
def test_the_dp_sgd_route_runs_at_a_handful_of_teachers(tmp_path, mnist_dir):
    config = yaml.safe_load((REPO / "configs/routes/dp_sgd_student_eps1.yaml").read_text())
    config.update(run_dir=str(tmp_path / "run"), data_dir=str(mnist_dir), teacher_ids=[0, 1, 2, 3], accelerator="cpu")
    config["dp_sgd_student"]["dp_sgd"].update(epochs=1, batch_size=64)
    path = tmp_path / "routes" / "dp_sgd_student_eps1.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    cli_main(["pipeline", "--config", str(path), "--summary", "false"])
    run = json.loads((tmp_path / "run/dp_sgd_student/report.json").read_text())["runs"][0]
    assert run["records"] == 960 and run["privacy"]["epsilon_end_to_end"] <= 1.001
    assert run["privacy"]["private"] is True and run["student"]["test_images"] == 5000
