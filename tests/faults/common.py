"""Pieces the fault suite shares: the CLI run in-process, its one-paragraph error, snapshots, planted
pickles and a file system that refuses writes (an audit hook: the tests run as root, whom chmod does not stop)."""

from __future__ import annotations

import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from pate_lightning.pipeline.cli import cli_main
from tests.conftest import REPO


def run(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """(exit status, stderr) of ``pate-lightning *args`` run in this process."""
    capsys.readouterr()
    try:
        cli_main([str(a) for a in args])
    except SystemExit as exit_:
        return int(exit_.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def fails_clearly(capsys: pytest.CaptureFixture, fragments: tuple[str, ...], *args: object) -> str:
    """Runs the CLI, checks exit status 2 and one error line holding every fragment; returns the line."""
    code, stderr = run(capsys, *args)
    lines = [line for line in stderr.splitlines() if line.startswith("pate-lightning: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    # torch's own advice for a refused pickle is the one thing a user must not follow
    assert "weights_only=False" not in lines[0] and "Union subtypes" not in lines[0]
    return lines[0]


def vae_args(data_dir: Path, run_dir: Path, *extra: object) -> list[object]:
    """A one-epoch VAE fit of teacher 0 of 4 on a tiny model: a second or two on a fake MNIST."""
    return [
        "fit", "--config", REPO / "configs/teacher_vae.yaml", f"--data.data_dir={data_dir}", f"--data.run_dir={run_dir}",
        "--data.num_teachers=4", "--data.teacher_ids=[0]", "--data.batch_size=8", "--model.latent_dim=4",
        "--model.hidden_dims=[16]", "--trainer.max_epochs=1", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", *extra,
    ]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: equal snapshots mean nothing was lost or changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


class Payload:
    """A pickle that creates ``marker`` when it is loaded: proof of code execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


_REFUSED: dict[str, object] = {}  # "root": folder whose writes fail, "errno": with which error
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.chmod", "os.truncate")


def _audit(event: str, args: tuple) -> None:
    if not _REFUSED:
        return
    if event == "open":
        path, mode, flags = args
        writing = bool(mode and any(c in str(mode) for c in "wax+")) or bool(isinstance(flags, int) and flags & _WRITE_FLAGS)
        paths = [path] if writing else []
    elif event in _WRITE_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(str(_REFUSED["root"])):
            code = int(_REFUSED["errno"])  # type: ignore[arg-type]
            raise OSError(code, os.strerror(code), os.fsdecode(path))


sys.addaudithook(_audit)


@contextmanager
def writes_fail(root: Path, code: int = errno.EACCES) -> Iterator[None]:
    """Every write under ``root`` fails with ``code`` (EACCES: a read-only folder; ENOSPC: a full disk)."""
    _REFUSED.update(root=str(Path(root).resolve()), errno=code)
    try:
        yield
    finally:
        _REFUSED.clear()
