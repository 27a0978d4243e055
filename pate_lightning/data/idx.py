"""IDX files (the MNIST family's format), plain or gzipped, read directly and validated by content.

No checksum is needed to trust a file: the header must say unsigned bytes of the expected rank,
the payload must be exactly as long as the header's dimensions say, images must be 28 x 28,
images and labels must agree in count, and every label must be a class of the dataset. So the
official ``*.gz`` files, their unpacked copies and repacked archives all read the same, offline.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pate_lightning.errors import PateError

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08  # IDX type code of unsigned bytes, the only one the MNIST family uses
IMAGE_SIDE = 28
REPLACE = "Replace it with the official file (or delete the dataset folder and run `pate-lightning prepare`)."


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding (big-endian header, uint8 payload) of ``array``.

    >>> idx_bytes(np.array([3, 1], dtype=np.uint8))
    b'\\x00\\x00\\x08\\x01\\x00\\x00\\x00\\x02\\x03\\x01'
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UBYTE, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def find(folder: Path, name: str) -> Optional[Path]:
    """``folder/name`` if present, else ``folder/name.gz`` (as the dataset is distributed), else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def parse(data: bytes, ndim: int, path: Path) -> np.ndarray:
    """The uint8 array an IDX file holds; a PateError naming ``path`` unless the header and length agree.

    >>> parse(idx_bytes(np.zeros((2, 3), np.uint8)), 2, Path("x")).shape
    (2, 3)
    """
    if len(data) < 4 + 4 * ndim:
        raise PateError(f"is too short ({len(data)} bytes) to be an IDX file; it is truncated. {REPLACE}", path)
    zero, kind, rank = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or kind != UBYTE or rank != ndim:
        raise PateError(
            f"is not an IDX file of unsigned bytes with {ndim} dimension(s) (magic number {data[:4].hex()}, "
            f"expected 0000080{ndim}); it is corrupt or another file under this name. {REPLACE}", path,
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise PateError(f"holds {len(data)} bytes but its header {dims} needs {expected}: the file is {state}. {REPLACE}", path)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read(path: Path, ndim: int) -> np.ndarray:
    """Read ``path`` (gzipped when it starts with gzip's magic bytes, whatever its name) and parse it."""
    try:
        data = path.read_bytes()
        if data[:2] == GZIP_MAGIC:
            data = gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise PateError(f"is a damaged gzip archive ({error}). {REPLACE}", path) from None
    return parse(data, ndim, path)


def read_split(images_path: Path, labels_path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 from one split's two IDX files, validated together."""
    images = read(images_path, 3)
    labels = read(labels_path, 1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise PateError(f"holds images of {images.shape[1]} x {images.shape[2]} pixels, not 28 x 28. {REPLACE}", images_path)
    if len(images) == 0 or len(images) != len(labels):
        raise PateError(
            f"holds {len(images)} images but {labels_path.name} holds {len(labels)} labels; the two files of a "
            f"split must have the same, non-zero count (one may be truncated or from another split). {REPLACE}", images_path,
        )
    if labels.max() >= num_classes:
        bad = int(np.flatnonzero(labels >= num_classes)[0])
        raise PateError(
            f"label {int(labels[bad])} at index {bad} is outside the dataset's classes 0..{num_classes - 1}; "
            f"the file is corrupt or belongs to another dataset. {REPLACE}", labels_path,
        )
    # np.frombuffer views read-only bytes: copy into tensors that own writable memory
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
