"""Poisson sampling per teacher for DP-SGD: every record joins each step's batch independently with rate q.

DP-SGD's privacy amplification (Mironov, Talwar & Zhang 2019) holds for this sampling only, not for
shuffled fixed-size batches. Batch sizes then vary per teacher and step, so a stacked step pads every
teacher's batch to the largest one and a mask (K, B) marks the real records. Membership is one draw per
step for the whole stack: in a private run from one generator keyed from OS entropy, in a seeded run from
per-teacher counter-based streams (``counter_streams``), so teacher k sees the same batches whether it
trains alone or stacked with others. Augmentation is one draw per step too, and a record slot's values
never depend on how far the other teachers' batches pad it.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch

from pate_lightning.counter_streams import TeacherStreams, uniform
from pate_lightning.data.augment import affine_from_uniform
from pate_lightning.data.datamodule import ShardDataModule, load_stream_counters, stack_shards
from pate_lightning.seeding import Stream, entropy_generator


def steps_per_epoch(sample_rate: float) -> int:
    """Steps that pass over the shard once in expectation: round(1 / sample_rate).

    >>> steps_per_epoch(32 / 240), steps_per_epoch(1.0)
    (8, 1)
    """
    return max(1, round(1 / sample_rate))


def poisson_batch(uniforms: torch.Tensor, sample_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each teacher's Poisson sample from uniforms (K, M), padded: index (K, B) into its shard, in shard
    order, and mask (K, B), B >= 1; record m joins teacher k's batch when ``uniforms[k, m] < sample_rate``.

    >>> index, mask = poisson_batch(torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.7, 0.9]]), 0.5)
    >>> index.tolist(), mask.tolist()
    ([[0, 2], [0, 1]], [[True, True], [False, False]])
    """
    chosen = uniforms < sample_rate  # (K, M)
    counts = chosen.sum(1)  # (K,)
    width = max(1, int(counts.max()))  # at least one (masked) slot: an empty step still adds noise
    # a stable sort puts each teacher's chosen records first, in shard order
    index = torch.sort((~chosen).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    mask = torch.arange(width) < counts.unsqueeze(1)
    return index, mask  # (K, B), (K, B)


class PoissonShardLoader:
    """Yields ``(images (K, B, 1, 28, 28) uint8, labels (K, B), theta (K, B, 2, 3) or None, mask (K, B))``.

    An epoch is ``steps_per_epoch(sample_rate)`` steps: one pass over the shard in expectation.
    """

    def __init__(
        self, images: list[torch.Tensor], labels: list[torch.Tensor], teacher_ids: list[int],
        sample_rate: float, augment: bool, seed: int, sampling_seed: Optional[int],
    ) -> None:
        self.images, self.labels = stack_shards(images, labels, teacher_ids)  # (K, M, 28, 28) uint8, (K, M)
        self.sample_rate = sample_rate
        self.augment = augment
        # private: one generator keyed from OS entropy draws every teacher's membership (independent
        # uniforms per record); seeded (NOT private): teacher k's own stream from (sampling_seed, k)
        self.sampler = entropy_generator() if sampling_seed is None else None
        self.samplers = None if sampling_seed is None else TeacherStreams(sampling_seed, teacher_ids, Stream.POISSON)
        self.augmenters = TeacherStreams(seed, teacher_ids, Stream.AUGMENT)

    def __len__(self) -> int:
        return steps_per_epoch(self.sample_rate)

    def state_dict(self) -> dict[str, int]:
        # the sampler's counter only when it is seeded: nothing in a checkpoint may let its reader replay
        # which records a private run put in which batch
        state = {"augment": self.augmenters.get_state()}
        return {**state, "poisson": self.samplers.get_state()} if self.samplers is not None else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        streams = {"augment": self.augmenters}
        load_stream_counters(streams if self.samplers is None else {**streams, "poisson": self.samplers}, state)

    def _membership(self) -> torch.Tensor:
        """Uniforms (K, M) deciding this step's batches: one draw for the whole stack."""
        teachers, size = self.images.shape[:2]
        if self.samplers is None:
            return torch.rand(teachers, size, generator=self.sampler)
        return uniform(self.samplers.keys, self.samplers.next_counter(), (size,))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor]]:
        rows = torch.arange(self.images.shape[0]).unsqueeze(1)
        for _ in range(len(self)):
            index, mask = poisson_batch(self._membership(), self.sample_rate)  # (K, B)
            images = self.images[rows, index].unsqueeze(2)  # (K, B, 1, 28, 28) uint8
            theta = None
            if self.augment:
                # slot b's values depend only on (seed, teacher, step, b): padding never shifts them
                uniforms = uniform(self.augmenters.keys, self.augmenters.next_counter(), (index.shape[1], 4))
                theta = affine_from_uniform(uniforms)  # (K, B, 2, 3)
            yield images, self.labels[rows, index], theta, mask


class PoissonShardDataModule(ShardDataModule):
    """``ShardDataModule`` with Poisson sampling, for DP-SGD; batches are ``(images, labels, mask)``.

    Args:
        sample_rate: each record's probability of joining a step's batch; default
            ``batch_size / shard size`` (``batch_size`` is then the expected batch size).
        sampling_seed: None (a private run): membership drawn from OS entropy. A seed: teacher k's
            ``(sampling_seed, k)`` stream, for tests and replication (the run is then not private).
        (the other arguments are ``ShardDataModule``'s)
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
        sample_rate: Optional[float] = None,
        sampling_seed: Optional[int] = None,
    ) -> None:
        super().__init__(data_dir, dataset, run_dir, num_teachers, teacher_ids, start_id, count, batch_size, augment, seed)
        if sample_rate is not None and not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
            raise ValueError(f"sample_rate must lie in (0, 1] (each record's chance to join a batch), got {sample_rate!r}")
        self.save_hyperparameters()

    def sample_rate(self, shard_size: int) -> float:
        if self.hparams.sample_rate is not None:
            return float(self.hparams.sample_rate)
        return min(1.0, self.hparams.batch_size / shard_size)

    def group_sample_rate(self) -> float:
        """The sample rate of the teachers served (they share a shard size: the runner groups by size)."""
        sizes = {len(self.shards[t]) for t in self.selected}
        if len(sizes) != 1:
            raise ValueError(f"teachers {self.selected} have different shard sizes {sorted(sizes)}; group by size")
        return self.sample_rate(sizes.pop())

    def train_dataloader(self) -> PoissonShardLoader:
        images, labels = self._require()
        self._loader = PoissonShardLoader(
            [images[self.shards[t]] for t in self.selected],
            [labels[self.shards[t]] for t in self.selected],
            self.selected, self.group_sample_rate(), self.hparams.augment, self.hparams.seed,
            self.hparams.sampling_seed,
        )
        if self._loader_state is not None:
            self._loader.load_state_dict(self._loader_state)
            self._loader_state = None
        return self._loader

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, theta, mask = batch
        images, labels = super().on_after_batch_transfer((images, labels, theta), dataloader_idx)
        return images, labels, mask

