"""The query sets and the student's held-out test set, validated before anything runs.

``mnist_test`` is the classic PATE public set: a prefix of the MNIST test set. Two protocols split it:
``half`` asks queries from the first 5,000 images and tests the student on the last 5,000 (this
package's original split); ``papers`` asks from the first 9,000 and tests on the last 1,000, as
Papernot et al. 2017 and 2018 did, so rows compare like for like with their anchors.
``synthetic`` is the pooled dataset written by ``combine`` (``{name}_samples.pt`` with its
``{name}_labels.csv``); its student is tested on the protocol's held-out part of the MNIST test set.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from pate_lightning import layout
from pate_lightning.data.sources import load_split
from pate_lightning.errors import PateError
from pate_lightning.io import load_torch

QUERY_SOURCES = ("mnist_test", "synthetic")
NUM_CLASSES = 10
# protocol -> share of the MNIST test set that is the query pool; the rest is the student's test set
PROTOCOLS = {"half": 0.5, "papers": 0.9}


def protocol_split(total: int, protocol: str) -> int:
    """Size of the query pool (a prefix) of a test set of ``total`` images; the rest is held out.

    >>> protocol_split(10_000, "half"), protocol_split(10_000, "papers")
    (5000, 9000)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    return round(total * PROTOCOLS[protocol])


def votes_name(source: str, protocol: str) -> str:
    """The vote cache's name: the ``papers`` pool is another image set than the ``half`` one (its cache key
    differs), so each keeps its own cache instead of recounting the other's."""
    return f"{source}_{protocol}" if source == "mnist_test" and protocol != "half" else source


@dataclass(frozen=True)
class QuerySet:
    """All the images of one query source; which of them are asked is decided by the caller.

    Args:
        source: one of ``QUERY_SOURCES``.
        path: the file the images came from (the data folder for ``mnist_test``).
        images: (N, 1, 28, 28) float32 in [0, 1].
        truth: (N,) true labels where they exist (``mnist_test``), else None.
        generator_labels: (N,) the labels the generating teachers gave (``synthetic``), else None.
    """

    source: str
    path: Path
    images: torch.Tensor
    truth: Optional[torch.Tensor] = None
    generator_labels: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.images.shape[0]


def _mnist_test(data_dir: str | Path, dataset: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split(dataset, data_dir, train=False)  # the test set of any MNIST-family dataset
    return images.unsqueeze(1).float().div_(255), labels  # (N, 1, 28, 28), (N,)


def mnist_test_queries(data_dir: str | Path, protocol: str = "half", dataset: str = "mnist") -> QuerySet:
    """The protocol's query pool (a prefix of the MNIST test set), with its true labels."""
    images, labels = _mnist_test(data_dir, dataset)
    split = protocol_split(len(images), protocol)
    return QuerySet("mnist_test", Path(data_dir), images[:split], truth=labels[:split])


def holdout_set(data_dir: str | Path, protocol: str = "half", dataset: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """The rest of the MNIST test set after the protocol's query pool: the student's test set, never queried."""
    images, labels = _mnist_test(data_dir, dataset)
    split = protocol_split(len(images), protocol)
    return images[split:], labels[split:]


def check_images(images: object, path: Path) -> torch.Tensor:
    """A float tensor (N, 1, 28, 28), finite, in [0, 1], with N >= 1; else a PateError naming ``path``."""
    expected = "expected a float tensor N x 1 x 28 x 28 in [0, 1] as `pate-lightning combine` writes"
    if not isinstance(images, torch.Tensor):
        raise PateError(f"holds a {type(images).__name__}, not a tensor; {expected}.", path)
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28) or images.shape[0] == 0:
        raise PateError(f"holds a tensor of shape {tuple(images.shape)}; {expected}.", path)
    if not images.is_floating_point():
        raise PateError(f"holds a {images.dtype} tensor; {expected}.", path)
    if not torch.isfinite(images).all():
        raise PateError(f"holds NaN or infinite pixels; {expected}.", path)
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise PateError(f"pixel values span [{low:.3g}, {high:.3g}]; {expected} (not normalized).", path)
    return images.float()


def labels_path(samples_path: Path) -> Path:
    """``{name}_labels.csv`` beside ``{name}_samples.pt``."""
    name = samples_path.name
    stem = name[: -len("_samples.pt")] if name.endswith("_samples.pt") else samples_path.stem
    return layout.combined_file(samples_path.parent, stem, "labels.csv")


def read_generator_labels(path: Path, count: int) -> torch.Tensor:
    """The ``label`` column of a ``index,label,confidence`` CSV with one row per sample."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise PateError(f"cannot be read ({error}).", path) from None
    if not rows or [c.strip() for c in rows[0][:2]] != ["index", "label"]:
        raise PateError("must start with the header index,label,confidence.", path)
    body = [row for row in rows[1:] if row]
    if len(body) != count:
        raise PateError(f"has {len(body)} rows for {count} samples; the two files do not belong together.", path)
    try:
        labels = torch.tensor([int(row[1]) for row in body])
        indices = [int(row[0]) for row in body]
    except (ValueError, IndexError):
        raise PateError("has a row whose index or label is not an integer.", path) from None
    if indices != list(range(count)):
        raise PateError("its index column must run 0..N-1 in order.", path)
    if labels.numel() and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PateError(f"has labels outside 0..{NUM_CLASSES - 1}.", path)
    return labels


def synthetic_queries(samples_path: str | Path) -> QuerySet:
    """The pooled synthetic dataset; its labels CSV is optional (used only for the agreement column)."""
    path = Path(samples_path)
    if not path.is_file():
        raise PateError("synthetic samples not found; run `pate-lightning combine` first or set synthetic_samples.",
                        path)
    raw = load_torch(path, "synthetic samples", advice="Rerun `pate-lightning combine`.")
    images = check_images(raw, path)
    csv_path = labels_path(path)
    labels = read_generator_labels(csv_path, len(images)) if csv_path.is_file() else None
    return QuerySet("synthetic", path, images, generator_labels=labels)


def load_queries(
    source: str, data_dir: str | Path, synthetic_samples: str | Path, protocol: str = "half", dataset: str = "mnist"
) -> QuerySet:
    if source == "mnist_test":
        return mnist_test_queries(data_dir, protocol, dataset)
    if source == "synthetic":
        return synthetic_queries(synthetic_samples)
    raise ValueError(f"unknown query_source {source!r}; choose one of {QUERY_SOURCES}")


def select_queries(queries: QuerySet, num_queries: Optional[int], seed: int) -> torch.Tensor:
    """Indices of the queries asked: the first ``num_queries`` of ``mnist_test`` (as in the PATE papers),
    or a seeded random subset of the synthetic pool (stored teacher by teacher, so a prefix would ask
    only the first teachers' samples). ``None`` asks them all, in order."""
    total = len(queries)
    if num_queries is None:
        return torch.arange(total)
    if num_queries > total:
        raise ValueError(f"num_queries={num_queries} exceeds the {total} queries of {queries.source} ({queries.path})")
    if queries.source == "mnist_test":
        return torch.arange(num_queries)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[:num_queries].sort().values
