"""``ShardDataModule``: one teacher's shard or many, served as stacked per-teacher batches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from lightning.pytorch import LightningDataModule

from pate_lightning import layout
from pate_lightning.data import shards as shard_lib
from pate_lightning.counter_streams import TeacherStreams, permutation, uniform
from pate_lightning.data.augment import affine_from_uniform, apply_affine
from pate_lightning.data.sources import check_dataset_name, load_split, prepare
from pate_lightning.seeding import Stream

log = logging.getLogger(__name__)


def stack_shards(
    images: list[torch.Tensor], labels: list[torch.Tensor], teacher_ids: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shards of one teacher group as (K, M, 28, 28) images and (K, M) labels; sizes must agree."""
    sizes = {len(x) for x in images}
    if len(sizes) != 1:
        raise ValueError(f"teachers {teacher_ids} have different shard sizes {sorted(sizes)}; group by size")
    return torch.stack(images), torch.stack(labels)


class StackedShardLoader:
    """Yields ``(images (K, B, 1, 28, 28) uint8, labels (K, B), theta (K, B, 2, 3) or None)``.

    Images stay uint8 until ``ShardDataModule.on_after_batch_transfer`` scales them on the device:
    a quarter of the bytes to gather and copy (measured 13 ms of 36 per 250-teacher step on the CPU).

    Each teacher shuffles and augments from its own streams, all teachers in one call per epoch
    (order) and per step (augmentation), so teacher k sees the same batches whether it trains alone
    or stacked with others. Every teacher in one loader must have the same shard size (the runner
    groups teachers by size).
    """

    def __init__(
        self, images: list[torch.Tensor], labels: list[torch.Tensor], teacher_ids: list[int],
        batch_size: int, augment: bool, seed: int,
    ) -> None:
        self.images, self.labels = stack_shards(images, labels, teacher_ids)  # (K, M, 28, 28) uint8, (K, M)
        self.batch_size = min(batch_size, self.images.shape[1])
        self.augment = augment
        self.shufflers = TeacherStreams(seed, teacher_ids, Stream.SHUFFLE)
        self.augmenters = TeacherStreams(seed, teacher_ids, Stream.AUGMENT)

    def __len__(self) -> int:
        return -(-self.images.shape[1] // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        return {"shuffle": self.shufflers.get_state(), "augment": self.augmenters.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_stream_counters({"shuffle": self.shufflers, "augment": self.augmenters}, state)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]:
        size = self.images.shape[1]
        order = permutation(self.shufflers.keys, self.shufflers.next_counter(), size)  # (K, M)
        rows = torch.arange(len(order)).unsqueeze(1)
        for start in range(0, size, self.batch_size):
            index = order[:, start : start + self.batch_size]  # (K, B)
            images = self.images[rows, index].unsqueeze(2)  # (K, B, 1, 28, 28) uint8
            theta = None
            if self.augment:
                uniforms = uniform(self.augmenters.keys, self.augmenters.next_counter(), (index.shape[1], 4))
                theta = affine_from_uniform(uniforms)  # (K, B, 2, 3)
            yield images, self.labels[rows, index], theta


def load_stream_counters(streams: dict[str, TeacherStreams], state: dict[str, Any]) -> None:
    """Restore a loader's draw counters; a checkpoint of an older version holds per-teacher generator
    states (lists) instead, streams that no longer exist: those counters stay at 0 (seeded, non-privacy
    randomness only)."""
    for name, stream in streams.items():
        if isinstance(state.get(name), int):
            stream.set_state(state[name])


class ShardDataModule(LightningDataModule):
    """The teachers' private shards of an MNIST-family training set.

    Args:
        data_dir: where the dataset files live (prepared in ``prepare_data``).
        dataset: ``mnist``, ``fashion_mnist``, ``kmnist`` or ``emnist`` (digits split).
        run_dir: the run directory holding ``shard_indices.json`` and ``teachers/``.
        num_teachers: shard count of the partition; an existing ``shard_indices.json`` must be the one
            this count and ``seed`` make (else an error); None: use the existing file as it is.
        teacher_ids: teachers to serve (default all); overrides ``start_id``/``count``.
        start_id: first teacher when ``teacher_ids`` is not given.
        count: number of teachers from ``start_id`` (default: to the last).
        batch_size: per-teacher batch size, reduced to the shard size when larger.
        augment: small random affine augmentation of training batches.
        seed: partition seed and base of every per-teacher stream (teacher k: (seed, k)).
    """

    def __init__(
        self,
        data_dir: str = "data",
        dataset: str = "mnist",
        run_dir: str = ".",
        num_teachers: Optional[int] = 250,
        teacher_ids: Optional[list[int]] = None,
        start_id: Optional[int] = None,
        count: Optional[int] = None,
        batch_size: int = 32,
        augment: bool = True,
        seed: int = 42,
    ) -> None:
        super().__init__()
        check_dataset_name(dataset)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.shards: dict[int, list[int]] = {}
        self.selected: list[int] = []
        self._train: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._loader: Optional[StackedShardLoader] = None
        self._loader_state: Optional[dict[str, Any]] = None  # from a checkpoint, for the next loader

    @property
    def run_dir(self) -> Path:
        return Path(self.hparams.run_dir)

    def prepare_data(self) -> None:
        source = prepare(self.hparams.dataset, self.hparams.data_dir)
        log.debug("%s ready in %s (source: %s)", self.hparams.dataset, self.hparams.data_dir, source)

    def setup(self, stage: str = "fit") -> None:
        if self._train is not None:
            return
        images, labels = load_split(self.hparams.dataset, self.hparams.data_dir, train=True)
        path = layout.shard_file(self.run_dir)
        shards = shard_lib.load_or_create(path, len(images), self.hparams.num_teachers, self.hparams.seed)
        selected = shard_lib.select_teachers(
            shards, self.hparams.teacher_ids, self.hparams.start_id, self.hparams.count, path
        )
        self.shards, self.selected, self._train = shards, selected, (images, labels)
        for teacher_id in selected:
            if not layout.metadata_file(self.run_dir, teacher_id).exists():
                shard_lib.write_metadata(self.run_dir, teacher_id, self.shard_labels(teacher_id), path)

    def shard_images(self, teacher_id: int) -> torch.Tensor:
        """The teacher's private images (M, 1, 28, 28) float in [0, 1]."""
        images, _ = self._require()
        return images[self.shards[teacher_id]].unsqueeze(1).float().div_(255)

    def shard_labels(self, teacher_id: int) -> torch.Tensor:
        _, labels = self._require()
        return labels[self.shards[teacher_id]]

    def _require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._train is None:
            raise RuntimeError("ShardDataModule.setup() has not run")
        return self._train

    def train_dataloader(self) -> StackedShardLoader:
        images, labels = self._require()
        self._loader = StackedShardLoader(
            [images[self.shards[t]] for t in self.selected],
            [labels[self.shards[t]] for t in self.selected],
            self.selected,
            self.hparams.batch_size,
            self.hparams.augment,
            self.hparams.seed,
        )
        if self._loader_state is not None:
            self._loader.load_state_dict(self._loader_state)
            self._loader_state = None
        return self._loader

    def state_dict(self) -> dict[str, Any]:
        # the teachers' shuffling and augmentation streams, so a resumed group sees the same batches
        return {"loader": self._loader.state_dict()} if self._loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loader_state = state_dict.get("loader")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, theta = batch
        images = images.float().div_(255)  # uint8 -> [0, 1], on the device
        if theta is not None and self.trainer is not None and self.trainer.training:
            images = apply_affine(images, theta)
        return images, labels
