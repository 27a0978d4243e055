"""Atomic writes, hashes and JSON helpers: every output file goes through here.

A file is written to a temporary sibling and renamed into place, so a crash or a bad
input never leaves a half-written file or replaces an earlier good one.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import pickle
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from pate_lightning.errors import PateError

REGENERATE = "Regenerate it by rerunning the stage that writes it (with --overwrite true)."

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, target)
    except OSError as error:
        if error.filename is None or Path(error.filename).name.startswith(f".{target.name}."):
            # name the file the user knows, not its temporary sibling
            raise type(error)(error.errno, error.strerror, str(target)) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def exclusive_lock(path: str | os.PathLike, folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``fcntl.flock`` on ``path`` (created if need be, our pid written in it) or refuse, naming the holder.

    Two runs writing one folder would mix their outputs. The OS drops the lock when its process ends, even
    by SIGKILL, so a stale file never blocks. In a folder that cannot be written the lock is taken on a
    read-only descriptor, or not at all if the file is absent: such a run writes nothing to mix.
    """
    import fcntl

    path, fd, writable = Path(path), None, True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        writable = False
        fd = os.open(path, os.O_RDONLY) if path.is_file() else None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = path.read_text(errors="replace").strip() or "unknown"
                raise PateError(
                    f"another run (pid {holder}) is working in this folder; two runs in one folder would mix their "
                    "outputs. Wait for it to finish, or use another run_dir.", folder,
                ) from None
            if writable:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


@contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """An OSError that names no file (a library's writer thread: TensorBoard's on a full disk) names ``path``."""
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def keep_aside(path: str | os.PathLike, why: str) -> Path:
    """Copy a damaged file to ``{name}.damaged-{time}`` beside it, with a warning, before it is replaced afresh."""
    import logging
    import time

    path = Path(path)
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    write_bytes(aside, path.read_bytes())
    logging.getLogger(__name__).warning("%s: %s; kept as %s and started afresh", path, why, aside.name)
    return aside


def remove_files(folder: str | os.PathLike, pattern: str) -> None:
    """Delete the files in ``folder`` matching ``pattern`` (none there: nothing to do)."""
    for path in Path(folder).glob(pattern):
        if path.is_file():
            path.unlink()


# the settings that shape the outputs of the teacher group being run (set by the runner around its Trainer)
_MARKER_SETTINGS: ContextVar[dict[str, Any] | None] = ContextVar("marker_settings", default=None)
MARKER_HASH_KEY = "settings_hash"


@contextmanager
def marker_settings(settings: dict[str, Any]) -> Iterator[None]:
    """Done-markers written inside (``write_marker``) record ``settings`` and their hash."""
    token = _MARKER_SETTINGS.set(settings)
    try:
        yield
    finally:
        _MARKER_SETTINGS.reset(token)


def write_marker(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """A teacher's done-marker (its report, written last) with the settings it was made with, in one atomic write:
    stamped afterwards, a run killed in between left a marker without settings, which counted as done."""
    settings = _MARKER_SETTINGS.get()
    if settings is not None:
        report = {**report, MARKER_HASH_KEY: sha256_json(settings), "settings": settings}
    return write_json(path, report)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as JSON; NaN and Infinity are not JSON (readers reject them), so a non-finite value is an error."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise PateError(f"not written: it would hold non-finite numbers ({', '.join(non_finite(obj)[:5])}), which are "
                        "not JSON; a setting or a training run gave NaN or infinity. Check the settings named.", path) from None
    return write_text(path, text + "\n")


def non_finite(value: Any, name: str = "") -> list[str]:
    """Dotted names of the NaN or infinite floats in nested dicts and lists, with their values.

    >>> non_finite({"student": {"lr": float("inf"), "epochs": 3}, "w": [1.0, float("nan")]})
    ['student.lr=inf', 'w[1]=nan']
    """
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{name}={value}"]
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in non_finite(item, f"{name}.{key}" if name else str(key))]
    if isinstance(value, (list, tuple)):
        return [bad for index, item in enumerate(value) for bad in non_finite(item, f"{name}[{index}]")]
    return []



def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` through an in-memory buffer so the bytes (and their hash) are reproducible."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, text.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise PateError("file not found.", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PateError(f"is not valid JSON ({error}).", path) from None


def _torch_reason(error: Exception) -> str:
    """torch's reason without its advice: it suggests turning ``weights_only`` off, the one thing not to do."""
    advice = ("weights_only", "weights only", "trusted source", "documentation", "file an issue", "please torch.save")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    kept = [line for line in lines if not any(word in line.lower() for word in advice)]
    return (kept[0] if kept else type(error).__name__).split(". ")[0][:200]


def load_torch(path: str | os.PathLike, what: str, mmap: bool = False, advice: str = REGENERATE) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only; any other content is a clear error.

    A file holding other Python objects is refused before any of them is built, so a planted file
    cannot run code; the message never suggests loading it another way.
    """
    path = Path(path)
    if not path.is_file():
        raise PateError(f"{what} not found.", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        reason = _torch_reason(error)
        if "global" in reason.lower():
            raise PateError(
                f"{what}: holds Python objects other than tensors ({reason}), so it was refused unread: "
                f"unpickling it could run code. Do not load it by other means unless you wrote it yourself. {advice}",
                path,
            ) from None
        detail = f"{type(error).__name__}: {reason}"
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError, ... for damaged files
        detail = f"{type(error).__name__}: {_torch_reason(error)}"
    raise PateError(
        f"{what}: cannot be read: the file is truncated, corrupt or not written by torch.save ({detail}); "
        f"nothing in it was run. {advice}", path,
    )


def load_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A plain state_dict of finite tensors, loaded with ``weights_only=True``; anything else is a clear error."""
    path = Path(path)
    state = load_torch(path, what)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PateError(f"does not hold a {what} state_dict (a dict of tensors). {REGENERATE}", path)
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise PateError(
            f"{what}: weights {', '.join(bad[:3])} hold NaN or infinite values (its training diverged). "
            "Retrain this teacher (its stage with --data.teacher_ids=[id] --overwrite true, perhaps a lower lr).", path,
        )
    return state


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object with sorted keys: the settings hash of a stage."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def move_if_absent(source: str | os.PathLike, target: str | os.PathLike) -> bool:
    """Move ``source`` to ``target`` (one rename, atomic on one file system) where only the source exists."""
    source, target = Path(source), Path(target)
    if not source.exists() or target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return True
