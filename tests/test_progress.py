"""Progress lines for long fits, and the CLI's handling of known third-party warning noise."""

from __future__ import annotations

import logging
import warnings

from pate_lightning import warning_filters
from pate_lightning.pate.student_training import StudentSettings, train_student
from pate_lightning.progress import EpochProgress
from tests.test_student import separable_digits


def test_student_prints_a_line_per_epoch_and_logs_to_tensorboard(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images, labels = separable_digits(40)
    settings = StudentSettings(epochs=3, batch_size=16, val_fraction=0.25)
    with caplog.at_level(logging.INFO, logger="pate_lightning.progress"):
        train_student(images, labels, separable_digits(20, seed=2), settings, "cpu", 0, tmp_path, logs=tmp_path / "logs")
    lines = [r.getMessage() for r in caplog.records if r.name == "pate_lightning.progress"]
    assert [line.split("  ")[0] for line in lines] == [f"[student] epoch {e}/3" for e in (1, 2, 3)]
    assert all("train/loss" in line and "val/acc" in line for line in lines)
    events = EventAccumulator(str(tmp_path / "logs/student/version_0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/acc", "test/acc"} <= tags
    assert {f"test/acc_class_{c}" for c in range(10)} <= tags
    assert (tmp_path / "logs/student/version_0/hparams.yaml").read_text().count("architecture") == 1


def test_heartbeat_logs_at_most_every_so_often_and_always_the_last_epoch(tmp_path, caplog):
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    with caplog.at_level(logging.INFO, logger="pate_lightning.progress"):
        Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                callbacks=[EpochProgress("teacher_vae teachers [0]", every_seconds=1e9)]).fit(BoringModel())
    lines = [r.getMessage() for r in caplog.records if r.name == "pate_lightning.progress"]
    assert len(lines) == 1 and lines[0].startswith("[teacher_vae teachers [0]] epoch 3/3")


def test_known_noise_is_ignored_and_other_warnings_lose_the_file_prefix(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warning_filters.quiet_known_warnings()
        warnings.warn("`training_step` returned `None`. If this was on purpose, ignore this warning...")
        warnings.warn("Total length of `StackedShardLoader` across ranks is zero. Please make sure this was your intention.")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("The number of training batches (8) is smaller than the logging interval Trainer(log_every_n_steps=50).")
        warnings.warn("teacher 0: no candidate survived the filters")
    assert [str(w.message) for w in caught] == ["teacher 0: no candidate survived the filters"]
    shown = warnings.formatwarning("teacher 0: empty", UserWarning, "/x/lightning/pytorch/trainer/call.py", 228)
    assert shown == "pate-lightning: warning: teacher 0: empty\n"
    assert all(why for _, why in warning_filters.KNOWN_NOISE)  # each filter says why it is noise


def test_public_prior_heartbeat_is_labelled_public_prior(tmp_path, caplog, monkeypatch):
    """Its heartbeat said `teacher_vae teachers [0]` beside the stage's own `[public_prior]` lines."""
    from pate_lightning.data import font_digits
    from pate_lightning.pipeline.cli import cli_main
    from tests.conftest import REPO

    monkeypatch.setattr(font_digits, "SMALL_PER_CLASS", {True: 4, False: 2})
    every_font = font_digits.font_files
    monkeypatch.setattr(font_digits, "font_files", lambda: every_font()[:3])
    with caplog.at_level(logging.INFO, logger="pate_lightning.progress"):
        cli_main(["fit", "--config", str(REPO / "configs/generators/public_prior.yaml"), f"--data.data_dir={tmp_path / 'data'}",
                  f"--data.run_dir={tmp_path / 'prior'}", "--data.dataset=font_digits_small", "--data.batch_size=8",
                  "--model.hidden_dims=[16]", "--model.latent_dim=4", "--trainer.max_epochs=1", "--trainer.accelerator=cpu",
                  "--trainer.enable_progress_bar=false"])
    lines = [r.getMessage() for r in caplog.records if r.name == "pate_lightning.progress"]
    assert lines and all(line.startswith("[public_prior teachers [0]] epoch") for line in lines), lines
