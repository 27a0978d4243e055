"""A teacher group interrupted mid-training resumes from its last.ckpt and ends where an
uninterrupted run ends; finished groups leave no checkpoint behind."""

import json

import pytest
import torch
from lightning.pytorch import Callback

from pate_lightning.pipeline.cli import cli_main
from tests.conftest import REPO
from tests.helpers import write_fake_mnist


class CrashAtEpoch(Callback):
    """Stands in for a killed job: fails when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated interruption")


def fit_args(tmp_path, run, *extra):
    data_dir = write_fake_mnist(tmp_path / "data", train=120)
    return [
        "fit", "--config", str(REPO / "configs/teacher_vae.yaml"), f"--data.data_dir={data_dir}",
        f"--data.run_dir={tmp_path / run}", "--data.num_teachers=4", "--data.teacher_ids=[0,1]",
        "--data.batch_size=8", "--model.latent_dim=4", "--model.hidden_dims=[16]", "--trainer.max_epochs=4",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--checkpoint_every_n_epochs=1",
        *extra,
    ]


def fit(tmp_path, run, *extra):
    cli_main(fit_args(tmp_path, run, *extra))
    return tmp_path / run


def outputs(run_dir, teacher_id):
    folder = run_dir / "teacher_vaes" / f"teacher_{teacher_id}"
    report = json.loads((folder / "training_report.json").read_text())
    return torch.load(folder / "decoder.pth"), report["history"]


def test_interrupted_group_resumes_to_the_same_teachers(tmp_path):
    straight = fit(tmp_path, "straight")
    assert not (straight / "checkpoints").exists()  # finished: removed, with the empty folders above it

    crash = "--trainer.callbacks+=tests.test_resume.CrashAtEpoch"
    with pytest.raises(RuntimeError, match="simulated interruption"):
        fit(tmp_path, "resumed", crash, "--trainer.callbacks.init_args.epoch=2")
    resumed = tmp_path / "resumed"
    checkpoint = resumed / "checkpoints" / "teacher_vae" / "teachers_0-1" / "last.ckpt"
    assert checkpoint.exists() and not (resumed / "teacher_vaes" / "teacher_0" / "training_report.json").exists()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1  # epochs 0 and 1 done

    fit(tmp_path, "resumed")
    assert not checkpoint.parent.exists()
    for teacher_id in (0, 1):
        weights, history = outputs(straight, teacher_id)
        weights_resumed, history_resumed = outputs(resumed, teacher_id)
        assert [row["epoch"] for row in history_resumed] == [0, 1, 2, 3]
        for row_resumed, row in zip(history_resumed, history, strict=True):
            assert row_resumed == pytest.approx(row)
        for name in weights:
            # same weights, optimizer state and random streams: the same path as never stopping
            torch.testing.assert_close(weights_resumed[name], weights[name], rtol=1e-5, atol=1e-6)


def test_checkpoint_from_other_settings_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(RuntimeError):
        fit(tmp_path, "run", "--trainer.callbacks+=tests.test_resume.CrashAtEpoch", "--trainer.callbacks.init_args.epoch=2")
    with pytest.raises(SystemExit) as exited:
        fit(tmp_path, "run", "--model.lr=0.01")
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "last.ckpt: this teacher group's checkpoint was written with different settings (model.lr)" in message
    assert (tmp_path / "run" / "checkpoints" / "teacher_vae" / "teachers_0-1" / "last.ckpt").exists()  # kept


@pytest.mark.parametrize("teachers", ["[2,3]", "[2]"])
def test_ckpt_path_of_other_teachers_is_refused_naming_both_groups(tmp_path, capsys, teachers):
    """Teacher 2 went on from teacher 0's weights (same size), or Lightning failed in zip() (another size)."""
    with pytest.raises(RuntimeError):
        fit(tmp_path, "run", "--trainer.callbacks+=tests.test_resume.CrashAtEpoch", "--trainer.callbacks.init_args.epoch=2")
    checkpoint = tmp_path / "run" / "checkpoints" / "teacher_vae" / "teachers_0-1" / "last.ckpt"
    with pytest.raises(SystemExit) as exited:
        fit(tmp_path, "other", f"--data.teacher_ids={teachers}", f"--ckpt_path={checkpoint}")
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert f"holds teachers [0, 1], not this group's teachers {teachers.replace(',', ', ')}" in message
    assert not (tmp_path / "other" / "teacher_vaes").exists()


@pytest.mark.parametrize("teachers", ["[2,3]", "[2]"])
def test_predict_ckpt_path_of_other_teachers_is_refused_naming_both_groups(tmp_path, capsys, teachers):
    """Teachers 2 and 3 decoded their candidates with teachers 0 and 1's decoders, exit 0 (another group size:
    a size-mismatch traceback); the checkpoint was also unpickled without weights_only."""
    from tests.synthetic_helpers import generate, make_run

    data_dir, run_dir = make_run(tmp_path, teachers=(0, 1, 2, 3))
    checkpoint = tmp_path / "generate_0-1.ckpt"
    generate(data_dir, tmp_path / "run", [0, 1], pool_size=20).save_checkpoint(checkpoint)
    before = sorted(p.name for p in (run_dir / "teachers").rglob("*"))
    with pytest.raises(SystemExit) as exited:
        cli_main(["predict", "--config", str(REPO / "configs/generate.yaml"), f"--data.data_dir={data_dir}",
                  f"--data.run_dir={run_dir}", f"--data.teacher_ids={teachers}", "--data.pool_size=20",
                  f"--ckpt_path={checkpoint}", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert f"holds teachers [0, 1], not this group's teachers {teachers.replace(',', ', ')}" in message
    assert sorted(p.name for p in (run_dir / "teachers").rglob("*")) == before  # teachers 2 and 3 wrote nothing
