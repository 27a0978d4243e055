import json

import pytest
import yaml

from pate_lightning.pipeline.cli import cli_main
from pate_lightning.errors import PateError
from pate_lightning.pipeline.chain import STAGE_NAMES, Pipeline, deep_merge
from tests.conftest import REPO
from tests.helpers import write_fake_mnist

LENIENT_LABELING = {
    "class_path": "pate_lightning.candidates.labeling.LabelingCallback",
    "init_args": {"confidence_threshold": 0.0, "min_nn_distance": 0.0, "min_diversity_distance": 0.0,
                  "quota": False, "min_per_class": 0},
}


def tiny_config(tmp_path, pool_size=64):
    data_dir = write_fake_mnist(tmp_path / "data", train=120, test=40)
    quiet = {"max_epochs": 1, "enable_progress_bar": False}
    config = {
        "run_dir": str(tmp_path / "run"), "data_dir": str(data_dir), "num_teachers": 4, "teacher_ids": [0, 1],
        "accelerator": "cpu", "devices": 1,
        "teacher_classifier": {"trainer": quiet},
        "teacher_vae": {"trainer": quiet, "model": {"init_args": {"hidden_dims": [16], "latent_dim": 4}}},
        "generate": {"trainer": {"enable_progress_bar": False, "callbacks": [LENIENT_LABELING]},
                     "data": {"init_args": {"pool_size": pool_size, "batch_size": 32}}},
        "evaluate": {"reference_epochs": 1},
        "combine": {},
        "pate": {"query_source": "synthetic", "mechanism": "gnmax", "sigma": 1.0, "num_queries": None,
                 "student": {"epochs": 1, "batch_size": 8, "val_fraction": 0.0}},
    }
    path = tmp_path / "configs" / "pipeline.yaml"
    path.parent.mkdir(exist_ok=True)
    for name in ("teacher_classifier.yaml", "teacher_vae.yaml", "generate.yaml"):
        (path.parent / name).write_text((REPO / "configs" / name).read_text())
    path.write_text(yaml.safe_dump(config))
    return path, config


# public_prior, union_dp_generator, generator_student and dp_sgd_student run only when a config has their section
# (tests/test_pipeline_public.py)
RUN_STAGES = [name for name in STAGE_NAMES
              if name not in ("public_prior", "union_dp_generator", "generator_student", "dp_sgd_student")]


def runs(run_dir):
    state = json.loads((run_dir / "pipeline_state.json").read_text())
    return {name: state[name]["runs"] for name in STAGE_NAMES if name in state}


def test_second_run_skips_everything_and_a_change_reruns_only_what_follows(tmp_path):
    path, config = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    cli_main(["pipeline", "--config", str(path)])
    assert runs(run_dir) == dict.fromkeys(RUN_STAGES, 1)
    for teacher_id in (0, 1):
        assert (run_dir / f"teachers/teacher_{teacher_id}/synthetic_samples.pt").exists()
    assert (run_dir / "pate/report.json").exists() and (run_dir / "synthetic/combined_samples.pt").exists()
    assert (run_dir / "figures/selection_funnel.png").exists()

    cli_main(["pipeline", "--config", str(path)])
    assert runs(run_dir) == dict.fromkeys(RUN_STAGES, 1)  # nothing ran again

    config["generate"]["data"]["init_args"]["pool_size"] = 48
    path.write_text(yaml.safe_dump(config))
    cli_main(["pipeline", "--config", str(path), "--no-summary"])
    assert runs(run_dir) == {"teacher_classifier": 1, "teacher_vae": 1, "generate": 2, "evaluate": 2,
                             "combine": 2, "pate": 2}
    report = json.loads((run_dir / "teachers/teacher_0/selection_report.json").read_text())
    assert report["pool_size"] == 48  # the generate stage really re-ran with the new setting


def test_from_reruns_that_stage_and_the_rest(tmp_path):
    path, _ = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    cli_main(["pipeline", "--config", str(path), "--no-summary"])
    cli_main(["pipeline", "--config", str(path), "--summary", "false", "--from_stage", "combine"])
    assert runs(run_dir) == {"teacher_classifier": 1, "teacher_vae": 1, "generate": 1, "evaluate": 1,
                             "combine": 2, "pate": 2}


def test_unknown_keys_and_stages_are_clear_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("run_dir: x\ntypo_stage: {}\n")
    with pytest.raises(PateError, match="unknown keys \\['typo_stage'\\]"):
        Pipeline(path)
    path.write_text("run_dir: x\nseed: 43\n")
    with pytest.raises(PateError, match="top-level seed is not a pipeline setting"):
        Pipeline(path)
    with pytest.raises(ValueError, match="unknown stage"):
        Pipeline(REPO / "configs/demo.yaml", from_stage="nope")


def test_deep_merge_overrides_only_what_changes():
    base = {"trainer": {"max_epochs": 100, "devices": 1}, "model": {"init_args": {"lr": 1e-3}}}
    assert deep_merge(base, {"trainer": {"max_epochs": 2}}) == {
        "trainer": {"max_epochs": 2, "devices": 1}, "model": {"init_args": {"lr": 1e-3}}}


def test_pipeline_parses_like_the_other_commands(tmp_path, capsys):
    """--print_config, any stage's key from the command line, and a config outside configs/ (its base configs
    from the repository's configs/): it failed with "base config of stage teacher_classifier not found"."""
    path, config = tiny_config(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "pipeline.yaml"  # no stage configs beside it
    elsewhere.parent.mkdir()
    elsewhere.write_text(path.read_text())
    cli_main(["pipeline", "--config", str(elsewhere), "--print_config", "--devices", "1",
              "--teacher_vae.trainer.max_epochs", "3", "--pate.student.epochs=2", "--generate.data.init_args.pool_size=48"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["teacher_vae"]["trainer"] == {"max_epochs": 3, "enable_progress_bar": False}  # merged, typed
    assert printed["pate"]["student"] == {**config["pate"]["student"], "epochs": 2}
    assert printed["generate"]["data"]["init_args"]["pool_size"] == 48 and printed["devices"] == 1
    assert not (tmp_path / "run").exists()  # printing runs nothing

    from pate_lightning.pipeline.chain import Pipeline, lightning_stage_config
    from pate_lightning.pipeline.stage_table import get

    pipeline = Pipeline(elsewhere, overrides={"teacher_vae": {"trainer": {"max_epochs": 3}}})
    settings = lightning_stage_config(get("teacher_vae"), pipeline.config, elsewhere.parent)
    assert settings["trainer"]["max_epochs"] == 3 and settings["model"]["class_path"].endswith("TeacherVAEModule")
