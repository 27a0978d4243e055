"""Faults that were handled but noisy: each now ends in the CLI's one paragraph naming the setting or file."""

from __future__ import annotations

import errno
import threading

import pytest

from tests.conftest import REPO
from tests.faults.common import fails_clearly, vae_args


def test_full_disk_under_tensorboard_is_one_paragraph_naming_the_log_folder(tmp_path, capsys, monkeypatch):
    from tensorboard.summary.writer import record_writer

    from tests.helpers import write_fake_mnist

    writes = []

    def full_after_the_first(self, data):  # the event file is created, then the disk fills
        writes.append(data)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_writer.RecordWriter, "write", full_after_the_first)
    # Python's own hook (pytest's would catch the writer thread's traceback before it reached stderr)
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run"
    fails_clearly(capsys, (str(run_dir / "logs" / "teacher_vae" / "teacher_0"), "No space left", "disk is full"),
                  *vae_args(data_dir, run_dir, "--trainer.max_epochs=2"))
    assert len(writes) > 1


@pytest.mark.parametrize("args, fragments", [
    (["fit", "--config", REPO / "configs/teacher_vae_dp.yaml", "--model.noise_seed=abc"],
     ("setting model.noise_seed: expected int or null, got 'abc'", "pate-lightning fit --help")),
    (["fit", "--config", REPO / "configs/teacher_vae.yaml", "--data.batch_size=abc"],
     ("setting data.batch_size: expected int, got 'abc'",)),
    (["fit", "--config", REPO / "configs/teacher_vae.yaml", "--model.noise_seed=3"],
     ("setting model.noise_seed: not a setting of TeacherVAEModule",)),
    (["pate", "--num_queries", "1.5"], ("setting num_queries: expected int or null, got '1.5'", "pate-lightning pate --help")),
    (["pipeline", "--config", REPO / "configs/demo.yaml", "--num_teachers", "abc"], ("setting num_teachers: expected int",)),
])
def test_a_value_of_the_wrong_type_is_one_paragraph_naming_the_setting(capsys, args, fragments):
    """jsonargparse printed the usage (~90 lines) and a block per type of every Union around the setting."""
    fails_clearly(capsys, fragments, *args)


@pytest.mark.parametrize("setting, fragment", [
    ("--trainer.devices=abc", "devices"), ("--trainer.devices=0", "devices"), ("--trainer.max_epochs=-5", "max_epochs"),
])
def test_trainer_values_lightning_refuses_are_one_line_with_fitting_advice(tmp_path, capsys, setting, fragment):
    """devices 'abc' was a TypeError traceback; devices 0 and max_epochs -5 were told to change the accelerator."""
    from tests.helpers import write_fake_mnist

    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    line = fails_clearly(capsys, (fragment, "Lightning refuses them"), *vae_args(data_dir, tmp_path / "run", setting))
    assert "--trainer.accelerator cpu" not in line


@pytest.mark.parametrize("setting, fragment", [({"devices": 0}, "devices"), ({"max_epochs": -5}, "max_epochs")])
def test_pipeline_trainer_values_lightning_refuses_are_one_line(tmp_path, capsys, setting, fragment):
    import yaml

    from tests.test_pipeline import tiny_config

    path, config = tiny_config(tmp_path)
    config.update(setting) if "devices" in setting else config["teacher_classifier"]["trainer"].update(setting)
    path.write_text(yaml.safe_dump(config))
    line = fails_clearly(capsys, ("stage teacher_classifier failed", fragment, "Lightning refuses them"),
                         "pipeline", "--config", path, "--summary", "false")
    assert "--trainer.accelerator cpu" not in line


def test_nan_latent_noise_names_the_setting(tmp_path, capsys):
    """It failed inside the latent draw, naming no setting."""
    from tests.faults.test_run_faults import generate_args

    fails_clearly(capsys, ("latent_noise=nan", "finite"),
                  *generate_args(tmp_path / "data", tmp_path / "run", "--data.latent_noise=.nan"))


def test_truncated_synthetic_samples_are_named(tmp_path, capsys):
    """A truncated file read as 'a file: Invalid argument. Fix the file system problem'."""
    from pate_lightning import layout
    from pate_lightning.errors import PateError
    from pate_lightning.pipeline.run_report import kept_grid
    from tests.test_combine import write_dataset

    for teacher_id in (0, 1):
        write_dataset(tmp_path, teacher_id, [0, 1, 2, 3])
    samples = layout.synthetic_samples_file(tmp_path, 0)
    samples.write_bytes(samples.read_bytes()[: samples.stat().st_size // 2])
    fails_clearly(capsys, (str(samples), "teacher 0 synthetic samples", "truncated"), "combine", f"--run_dir={tmp_path}")
    with pytest.raises(PateError, match="synthetic_samples.pt: teacher 0 synthetic samples: cannot be read"):
        kept_grid(tmp_path, 0)  # the closing summary's picture of kept samples
