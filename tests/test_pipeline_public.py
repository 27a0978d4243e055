"""The pipeline's optional public_prior stage: the demo's route (public family + PATE selection) end to end."""

import json

import yaml

from pate_lightning.data import font_digits
from pate_lightning.pipeline.chain import lightning_stage_config
from pate_lightning.pipeline import stage_table
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.pipeline.run_report import family_line, pate_lines
from tests.conftest import REPO
from tests.test_pipeline import tiny_config

PATE_SELECTION = {"class_path": "pate_lightning.candidates.labeling.LabelingCallback",
                  "init_args": {"selection": "pate", "min_diversity_distance": 0.0, "max_per_class": 1000000}}


def test_public_prior_takes_only_data_dir_from_the_private_run(tmp_path):
    config = {"run_dir": "runs/x", "data_dir": "d", "dataset": "mnist", "num_teachers": 250, "teacher_ids": [0],
              "public_prior": {"data": {"init_args": {"dataset": "font_digits_small"}}}}
    merged = lightning_stage_config(stage_table.get("public_prior"), config, REPO / "configs")
    data = merged["data"]["init_args"]
    assert data["run_dir"] == "runs/x/public_vae" and data["data_dir"] == "d"
    assert data["dataset"] == "font_digits_small" and data["num_teachers"] == 1  # not the private run's


def test_public_family_with_pate_selection_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(font_digits, "SMALL_PER_CLASS", {True: 4, False: 2})
    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:3])
    path, config = tiny_config(tmp_path, pool_size=16)
    run_dir = tmp_path / "run"
    tiny_vae = {"hidden_dims": [16], "latent_dim": 4, "conditional": True, "architecture": "mlp"}
    config["public_prior"] = {"trainer": {"max_epochs": 1, "enable_progress_bar": False},
                              "model": {"init_args": tiny_vae},
                              "data": {"init_args": {"dataset": "font_digits_small", "batch_size": 8}}}
    config["teacher_vae"] = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 1, "enable_progress_bar": False, "callbacks": []},
        "model": {"init_args": {**tiny_vae, "generator": "public",
                                "public_vae": str(run_dir / "public_vae/teacher_vaes/teacher_0/vae_full.pth")}},
    }
    config["generate"]["trainer"]["callbacks"] = [PATE_SELECTION]
    config["pate"]["student"].update({"pretrain": "font_digits_small", "pretrain_epochs": 1, "pretrain_mix": 1.0})
    (path.parent / "generators").mkdir()
    (path.parent / "generators/public_prior.yaml").write_text((REPO / "configs/generators/public_prior.yaml").read_text())
    path.write_text(yaml.safe_dump(config))
    cli_main(["pipeline", "--config", str(path), "--summary", "false"])

    prior = json.loads((run_dir / "public_vae/teacher_vaes/teacher_0/training_report.json").read_text())
    assert prior["shard_size"] == 40 and prior["privacy"]["reads_private_data"] is False
    report = json.loads((run_dir / "pate/report.json").read_text())
    run = report[-1] if isinstance(report, list) else report["runs"][-1]
    assert run["privacy"]["privacy_scope"] == "end_to_end"
    assert run["student_method"] == "supervised+pretrain:font_digits_small"
    assert run["student"]["pretraining"]["images"] == 40 and run["student"]["pretraining"]["reads_private_data"] is False
    # the closing table names the family and puts the public-only score beside the student's
    assert family_line(run_dir, [0, 1]).startswith("generator family: public;")
    (line,) = pate_lines(run_dir)
    assert "scope=end_to_end" in line and "(public pretraining alone on font_digits_small: " in line
