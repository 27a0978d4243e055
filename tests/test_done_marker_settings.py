"""A done-marker and the settings it was made with are one write: no run can leave one without the other."""

from __future__ import annotations

import json

from pate_lightning import layout
from pate_lightning.pipeline import teacher_settings
from tests.faults.common import fails_clearly, run, vae_args
from tests.helpers import write_fake_mnist


def test_a_run_killed_after_the_marker_leaves_no_marker_without_settings(tmp_path, capsys, monkeypatch):
    """The runner stamped the settings into the writer's marker afterwards: killed in between, the marker had no
    settings and counted as done, so a rerun with other settings skipped the teacher."""
    # whatever the runner does after a group's Trainer returns does not happen (the run was killed there)
    monkeypatch.setattr(teacher_settings, "stamp", lambda *args, **kwargs: None, raising=False)
    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run"
    assert run(capsys, *vae_args(data_dir, run_dir))[0] == 0
    report = json.loads(layout.vae_report_file(run_dir, 0).read_text())
    assert report["settings"]["trainer"]["max_epochs"] == 1 and report["settings_hash"]
    monkeypatch.undo()
    fails_clearly(capsys, ("trainer.max_epochs: 1 -> 2", "--overwrite true"), *vae_args(data_dir, run_dir, "--trainer.max_epochs=2"))


def test_generate_markers_record_their_settings_in_the_same_write(tmp_path, capsys, monkeypatch):
    from tests.faults.test_run_faults import generate_args
    from tests.synthetic_helpers import make_run

    monkeypatch.setattr(teacher_settings, "stamp", lambda *args, **kwargs: None, raising=False)
    data_dir, run_dir = make_run(tmp_path, teachers=(0,))
    code, stderr = run(capsys, *generate_args(data_dir, run_dir, "--data.teacher_ids=[0]", "--data.pool_size=20",
                                              "--trainer.enable_progress_bar=false"))
    assert code == 0, stderr
    report = json.loads(layout.selection_report_file(run_dir, 0).read_text())
    assert report["settings"]["data"]["pool_size"] == 20 and report["settings_hash"]
