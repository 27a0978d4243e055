"""Faults that were handled but noisy: each now ends in the CLI's one paragraph naming the setting or file."""

from __future__ import annotations

import errno
import threading

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
