"""Fault suite, the run itself: settings out of range (#7, #9), a full disk or a read-only folder (#8),
and a process killed with SIGKILL mid-fit (already handled; the exception-based case is tests/test_resume.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest
from lightning.pytorch import Callback

from pate_lightning import layout
from tests.conftest import REPO
from tests.faults.common import fails_clearly, run, snapshot, vae_args, writes_fail
from tests.helpers import write_fake_mnist
from tests.synthetic_helpers import make_run
from tests.test_resume import fit, fit_args, outputs


def test_ensemble_size_zero_is_refused(tmp_path, capsys):  # 7
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    fails_clearly(capsys, ("ensemble_size must be >= 1", "got 0"), *vae_args(data_dir, tmp_path / "run", "--ensemble_size=0"))
    assert not (tmp_path / "run").exists()


def generate_args(data_dir, run_dir, *extra):
    return ["predict", "--config", REPO / "configs/generate.yaml", f"--data.data_dir={data_dir}",
            f"--data.run_dir={run_dir}", "--trainer.accelerator=cpu", *extra]


@pytest.mark.parametrize("setting, message", [
    ("--data.pool_size=0", "invalid setting of LatentDataModule: pool_size must be >= 1, got 0"),
    ("--trainer.callbacks.init_args.confidence_threshold=1.5",
     "invalid setting of LabelingCallback: confidence_threshold must lie in [0, 1], got 1.5"),
])
def test_range_errors_read_as_one_line(tmp_path, capsys, setting, message):  # 9
    line = fails_clearly(capsys, (message,), *generate_args(tmp_path / "data", tmp_path / "run", setting))
    assert line == f"pate-lightning: error: {message}"


def test_read_only_first_run_names_the_folder(tmp_path, capsys):  # 8
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    run_dir = tmp_path / "run"
    with writes_fail(run_dir):
        fails_clearly(capsys, (f"{run_dir}: Permission denied", "cannot be written", "--data.run_dir"),
                      *vae_args(data_dir, run_dir))
    assert not run_dir.exists()


def test_rerun_of_finished_work_needs_no_write_access(tmp_path, capsys):  # 8
    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run"
    assert run(capsys, *vae_args(data_dir, run_dir))[0] == 0
    before = snapshot(run_dir)
    with writes_fail(run_dir):
        code, stderr = run(capsys, *vae_args(data_dir, run_dir))
    assert code == 0, stderr
    assert snapshot(run_dir) == before


def test_predict_rerun_needs_no_write_access(tmp_path, capsys):  # 8, the generate stage
    data_dir, run_dir = make_run(tmp_path)
    args = generate_args(data_dir, run_dir, "--data.teacher_ids=[0]", "--data.pool_size=60",
                         "--trainer.callbacks.init_args.confidence_threshold=0.5",
                         "--trainer.callbacks.init_args.min_per_class=1", "--trainer.enable_progress_bar=false")
    assert run(capsys, *args)[0] == 0
    before = snapshot(run_dir)
    with writes_fail(run_dir):
        code, stderr = run(capsys, *args)
    assert code == 0, stderr
    assert snapshot(run_dir) == before


def test_full_disk_names_the_path_and_loses_nothing(tmp_path, capsys):  # 8
    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run"
    assert run(capsys, *vae_args(data_dir, run_dir))[0] == 0  # teacher 0 done
    before = snapshot(run_dir)
    with writes_fail(run_dir / "teacher_vaes", errno.ENOSPC):
        fails_clearly(capsys, (str(layout.vae_dir(run_dir, 1)), "No space left on device", "The disk is full"),
                      *vae_args(data_dir, run_dir, "--data.teacher_ids=[0,1]"))
    after = snapshot(run_dir)
    assert all(after[name] == data for name, data in before.items() if not name.startswith("logs"))
    assert run(capsys, *vae_args(data_dir, run_dir, "--data.teacher_ids=[0,1]"))[0] == 0  # space freed: continues
    assert (layout.vae_dir(run_dir, 1) / "training_report.json").exists()


class KillAtEpoch(Callback):
    """SIGKILL to this very process when epoch ``epoch`` starts: no handler, no cleanup, no flush."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def test_sigkill_mid_fit_resumes_to_identical_weights(tmp_path):  # already handled
    straight = fit(tmp_path, "straight")
    killed = tmp_path / "killed"
    args = fit_args(tmp_path, "killed", "--trainer.callbacks+=tests.faults.test_run_faults.KillAtEpoch",
                    "--trainer.callbacks.init_args.epoch=2")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pate_lightning", *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert (killed / "checkpoints/teacher_vae/teachers_0-1/last.ckpt").exists()
    assert not (killed / "teacher_vaes/teacher_0/training_report.json").exists()
    fit(tmp_path, "killed")
    for teacher_id in (0, 1):
        assert (layout.decoder_file(killed, teacher_id).read_bytes() == layout.decoder_file(straight, teacher_id).read_bytes())
        assert outputs(killed, teacher_id)[1] == outputs(straight, teacher_id)[1]  # the same loss history
