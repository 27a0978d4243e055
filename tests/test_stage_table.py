"""The stage table drives the CLI, the runner and the pipeline: checked against the code and configs it names."""

import subprocess
import sys

import pytest
import yaml
from lightning.pytorch import Trainer

from pate_lightning.pipeline import chain as pipeline
from pate_lightning.pipeline import runner, stage_table
from pate_lightning.pipeline.cli import cli_main
from pate_lightning.errors import PateError
from pate_lightning.pipeline.runner import PateCLI
from tests.conftest import REPO
from tests.helpers import write_fake_mnist


@pytest.mark.parametrize("stage", stage_table.STAGES, ids=lambda s: s.name)
def test_every_record_names_real_code_and_configs(stage):
    target = stage.load_target()
    if stage.kind in stage_table.LIGHTNING_KINDS:
        # the module's stage is this record, or (public_prior) a stage whose module it reuses in a run dir of its own
        assert target.stage == stage.name or (stage.run_dir_of and stage_table.get(target.stage).target == stage.target)
        config = yaml.safe_load((REPO / stage.config).read_text())
        assert config["model"]["class_path"] == stage.target.replace(":", ".")
        assert set(stage.ensemble_size) == {"cpu", "gpu"} and min(stage.ensemble_size.values()) >= 1
    else:
        assert callable(target) and target.__doc__
    if stage.writer:
        assert stage.writer_class().__name__ == stage.writer.rpartition(":")[2]
    if stage.config:
        assert (REPO / stage.config).is_file()
    if stage.done_marker:
        assert stage.done_marker(REPO / "run", 7).is_relative_to(REPO / "run")


def test_the_pipeline_runs_the_table_in_data_flow_order():
    assert pipeline.STAGE_NAMES == ["teacher_classifier", "public_prior", "union_dp_generator", "teacher_vae", "generate",
                                   "evaluate", "combine", "pate", "generator_student", "dp_sgd_student"]
    with pytest.raises(ValueError, match="unknown stage 'nope'; choose one of"):
        stage_table.get("nope")


def test_help_lists_every_command_once_without_importing_torch():
    code = ("import sys; from pate_lightning.pipeline.cli import cli_main; cli_main(['--help']); "
            "assert 'torch' not in sys.modules and 'lightning' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    listing = done.stdout.split("commands, in data-flow order")[1].split("\n\n")[0].splitlines()[1:]
    commands = [line.split()[0] for line in listing]
    assert commands == ["prepare", "fit", "eval-teachers", "fit", "union_dp_generator", "fit", "predict", "evaluate",
                        "combine", "pate", "generator_student", "dp_sgd_student", "compare", "pipeline"]


def test_an_unknown_command_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["validate", "--config", "configs/teacher_vae.yaml"])
    assert exit_.value.code == 2 and "unknown command 'validate'" in capsys.readouterr().err


def test_pipeline_flags_take_jsonargparse_style_and_the_old_spellings():
    new, _ = pipeline.pipeline_arguments(["--config", "c.yaml", "--from_stage", "combine", "--summary", "false"])
    old, _ = pipeline.pipeline_arguments(["--config", "c.yaml", "--from", "combine", "--no-summary"])
    assert (new.from_stage, new.summary) == (old.from_stage, old.summary) == ("combine", False)
    assert pipeline.pipeline_arguments(["--config", "c.yaml"])[0].summary is True


def tiny_fit(tmp_path, *extra):
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    return [
        "fit", "--config", str(REPO / "configs/teacher_vae.yaml"), f"--data.data_dir={data_dir}",
        f"--data.run_dir={tmp_path / 'run'}", "--data.num_teachers=4", "--data.teacher_ids=[0,1]",
        "--trainer.max_epochs=1", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        "--model.hidden_dims=[16]", "--model.latent_dim=4", *extra,
    ]


def test_pate_cli_alone_runs_the_stage_with_its_exporter(tmp_path):
    """PateCLI without cli_main: the table gives it the exporter, so the files are written (no silent no-op)."""
    cli = PateCLI(tiny_fit(tmp_path))
    for teacher_id in (0, 1):
        assert (tmp_path / f"run/teacher_vaes/teacher_{teacher_id}/training_report.json").is_file()
    assert '"teachers_done": 2' in (tmp_path / "run/run_summary.json").read_text()
    assert cli.method == "fit" and list(cli.datamodule.selected) == [0, 1]
    parsed = PateCLI(tiny_fit(tmp_path, "--overwrite=true"), run=False)  # parses, runs nothing
    assert parsed.config.overwrite is True


def test_a_stage_never_runs_without_its_writer(tmp_path):
    vae = stage_table.get("teacher_vae")
    bare = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    with pytest.raises(PateError, match="no VAEExport"):
        runner.require_writer(vae, bare)
    built = runner.build_trainer(vae, "fit", tmp_path, [0], {"logger": False, "accelerator": "cpu"}, 10)
    assert [type(c).__name__ for c in built.callbacks if type(c).__name__ in ("VAEExport", "GroupCheckpoint")] == [
        "VAEExport", "GroupCheckpoint"]  # exporter first: a checkpoint holds the epoch's history
    # generate: the config names the LabelingCallback (its thresholds are settings); without it, an error
    PateCLI(tiny_fit(tmp_path))
    args = ["predict", "--config", str(REPO / "configs/generate.yaml"), f"--data.data_dir={tmp_path / 'data'}",
            f"--data.run_dir={tmp_path / 'run'}", "--data.teacher_ids=[0]", "--data.pool_size=8",
            "--trainer.accelerator=cpu", "--trainer.callbacks=[]"]
    with pytest.raises(PateError, match="stage generate: the Trainer has no LabelingCallback"):
        PateCLI(args)
    assert not (tmp_path / "run/teachers/teacher_0/selection_report.json").exists()


def test_the_architecture_notes_list_every_stage_with_its_command_and_config():
    text = (REPO / "docs/architecture.md").read_text().split("## Stages")[1]
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    for stage in stage_table.STAGES:
        assert f"`{stage.command}`" in rows[stage.name] and (stage.config or "-") in rows[stage.name]
