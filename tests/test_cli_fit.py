import json
import logging
import subprocess
import sys

import pytest
import torch

from pate_lightning.pipeline.cli import cli_main
from tests.conftest import REPO
from tests.helpers import write_fake_mnist


def fit_args(run_dir, data_dir, *extra):
    return [
        "fit", "--config", str(REPO / "configs/teacher_vae.yaml"),
        f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", *extra,
    ]


@pytest.mark.integration
def test_fit_two_teachers_on_real_mnist_then_resume(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    cli_main(fit_args(run_dir, mnist_dir, "--data.teacher_ids=[0,1]", "--trainer.max_epochs=2"))
    for teacher_id in (0, 1):
        folder = run_dir / "teacher_vaes" / f"teacher_{teacher_id}"
        report = json.loads((folder / "training_report.json").read_text())
        assert report["epochs"] == 2 and report["shard_size"] == 240
        # learning happened: reconstruction falls over the two epochs
        assert report["history"][1]["recon"] < report["history"][0]["recon"]
        assert (folder / "decoder.pth").stat().st_size > 0
        meta = json.loads((run_dir / "teachers" / f"teacher_{teacher_id}" / "metadata.json").read_text())
        assert meta["shard_size"] == 240 and sum(meta["class_distribution"].values()) == 240
    shards = json.loads((run_dir / "shard_indices.json").read_text())
    assert len(shards) == 250
    assert list((run_dir / "logs/teacher_vae").iterdir())

    # a re-run skips finished teachers: their files are untouched
    decoder = run_dir / "teacher_vaes/teacher_0/decoder.pth"
    stamp = decoder.stat().st_mtime_ns
    cli_main(fit_args(run_dir, mnist_dir, "--data.teacher_ids=[0,1]", "--trainer.max_epochs=2"))
    assert decoder.stat().st_mtime_ns == stamp


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pate_lightning", *args], capture_output=True, text=True, cwd=REPO)


def test_bad_shard_file_is_one_paragraph_error_and_nothing_written(tmp_path):
    from tests.helpers import write_fake_mnist

    data_dir = write_fake_mnist(tmp_path / "data", train=100)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "shard_indices.json").write_text(json.dumps({"0": [1, 2, 3], "1": [3, 4]}))
    done = run_cli(*fit_args(run_dir, data_dir, "--trainer.max_epochs=1"))
    assert done.returncode == 2
    assert "index 3 is also in teacher 0" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["shard_indices.json"]


def test_unknown_teacher_is_a_clear_error(tmp_path):
    from tests.helpers import write_fake_mnist

    data_dir = write_fake_mnist(tmp_path / "data", train=100)
    done = run_cli(*fit_args(tmp_path / "run", data_dir, "--data.num_teachers=4", "--data.teacher_ids=[9]"))
    assert done.returncode == 2
    assert "teacher ids [9] are not in the shard file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_a_gpu_is_one_paragraph_exit_2(tmp_path, capsys):
    """It was a 31-line MisconfigurationException traceback and exit 1."""
    with pytest.raises(SystemExit) as exited:
        cli_main(fit_args(tmp_path / "run", tmp_path / "data", "--trainer.accelerator=gpu"))
    assert exited.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("pate-lightning: error: trainer settings (accelerator 'gpu'")
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_strategy_is_named_as_unused_because_teachers_train_teacher_parallel(tmp_path, caplog):
    """--trainer.strategy ddp was ignored without a word."""
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    with caplog.at_level(logging.WARNING):
        cli_main(fit_args(tmp_path / "run", data_dir, "--data.num_teachers=4", "--data.teacher_ids=[0]",
                          "--trainer.max_epochs=1", "--model.hidden_dims=[16]", "--model.latent_dim=4",
                          "--trainer.strategy=ddp"))
    assert "--trainer.strategy ddp is not used" in caplog.text and "teacher-parallel" in caplog.text
    assert (tmp_path / "run/teacher_vaes/teacher_0/decoder.pth").is_file()


def test_done_markers_know_their_settings_and_fast_dev_run_marks_nothing_done(tmp_path, capsys):
    """A rerun with --trainer.max_epochs 2 said "1 teachers already done, skipped"; a fast_dev_run's report counted."""
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    run_dir = tmp_path / "run"
    tiny = ["--data.num_teachers=4", "--data.teacher_ids=[0]", "--model.hidden_dims=[16]", "--model.latent_dim=4"]
    report = run_dir / "teacher_vaes/teacher_0/training_report.json"

    cli_main(fit_args(run_dir, data_dir, *tiny, "--trainer.fast_dev_run=true"))
    assert not report.exists()  # fast_dev_run: nothing counts as done
    cli_main(fit_args(run_dir, data_dir, *tiny, "--trainer.max_epochs=1"))
    assert json.loads(report.read_text())["epochs"] == 1  # trained, not skipped

    with pytest.raises(SystemExit) as exited:
        cli_main(fit_args(run_dir, data_dir, *tiny, "--trainer.max_epochs=2"))
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "teacher 0's teacher_vae outputs were made with other settings (trainer.max_epochs: 1 -> 2)" in message
    assert json.loads(report.read_text())["epochs"] == 1  # kept

    cli_main(fit_args(run_dir, data_dir, *tiny, "--trainer.max_epochs=2", "--overwrite=true"))
    assert json.loads(report.read_text())["epochs"] == 2
    stamp = report.stat().st_mtime_ns
    cli_main(fit_args(run_dir, data_dir, *tiny, "--trainer.max_epochs=2"))  # same settings: skipped, untouched
    assert report.stat().st_mtime_ns == stamp
