"""The library API: names importable from the package root, lazily, and docs/library.md's script runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

LIBRARY_DOC = REPO / "docs" / "library.md"


def doc_script() -> str:
    """The one python block of docs/library.md, so the page and the test cannot drift apart."""
    blocks = re.findall(r"```python\n(.*?)```", LIBRARY_DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"docs/library.md should hold one python script, found {len(blocks)}"
    return blocks[0]


def test_root_exports_the_parts_and_imports_lazily():
    code = (
        "import sys, pate_lightning as p\n"
        "assert 'lightning' not in sys.modules and 'torch' not in sys.modules, 'root import pulled in torch'\n"
        "from pate_lightning import ShardDataModule, TeacherVAEModule, KLAnnealing, CandidateGenerator, LabelingCallback\n"
        "from pate_lightning.generators.module import TeacherVAEModule as direct\n"
        "assert TeacherVAEModule is direct\n"
        "assert set(p.__all__) <= set(dir(p))\n"
        "print(len(p.__all__))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 6
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        import pate_lightning

        pate_lightning.NotAThing  # noqa: B018


@pytest.mark.integration
def test_library_doc_script_trains_generates_and_labels(tmp_path, mnist_dir):
    (tmp_path / "data").symlink_to(mnist_dir.resolve(), target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", doc_script()], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "library"
    classifier = torch.load(run / "trained_nets" / "0" / "model.pth", weights_only=True)
    assert "fc1.weight" in classifier
    decoder = torch.load(run / "teacher_vaes" / "teacher_0" / "decoder.pth", weights_only=True)
    assert decoder and all(isinstance(t, torch.Tensor) for t in decoder.values())
    samples = torch.load(run / "teachers" / "teacher_0" / "synthetic_samples.pt", weights_only=True)
    rows = (run / "teachers" / "teacher_0" / "labels.csv").read_text().splitlines()
    assert rows[0] == "index,label,confidence"
    assert samples.shape[1:] == (1, 28, 28) and samples.shape[0] == len(rows) - 1 > 0
    assert f"kept: {len(rows) - 1} samples" in done.stdout
