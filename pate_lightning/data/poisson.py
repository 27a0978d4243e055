"""Poisson sampling per teacher for DP-SGD: every record joins each step's batch independently with rate q.

DP-SGD's privacy amplification (Mironov, Talwar & Zhang 2019) holds for this sampling only, not for
shuffled fixed-size batches. Batch sizes then vary per teacher and step, so a stacked step pads every
teacher's batch to the largest one and a mask (K, B) marks the real records. Each teacher's draws
(membership, augmentation) use only its own generators and its own batch size, so teacher k sees the
same batches whether it trains alone or stacked with others.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch

from pate_lightning.data.augment import affine_from_uniform
from pate_lightning.data.datamodule import ShardDataModule, stack_shards
from pate_lightning.seeding import Stream, generator, private_generators


def steps_per_epoch(sample_rate: float) -> int:
    """Steps that pass over the shard once in expectation: round(1 / sample_rate).

    >>> steps_per_epoch(32 / 240), steps_per_epoch(1.0)
    (8, 1)
    """
    return max(1, round(1 / sample_rate))


def poisson_batch(
    shard_size: int, sample_rate: float, generators: list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each teacher's Poisson sample, padded: index (K, B) into its shard and mask (K, B), B >= 1.

    >>> index, mask = poisson_batch(10, 1.0, [torch.Generator().manual_seed(0)] * 2)
    >>> index.shape, bool(mask.all())
    (torch.Size([2, 10]), True)
    """
    chosen = [(torch.rand(shard_size, generator=g) < sample_rate).nonzero().squeeze(1) for g in generators]
    width = max(1, max(len(c) for c in chosen))  # at least one (masked) slot: an empty step still adds noise
    index = torch.zeros(len(chosen), width, dtype=torch.long)
    mask = torch.zeros(len(chosen), width, dtype=torch.bool)
    for k, rows in enumerate(chosen):
        index[k, : len(rows)] = rows
        mask[k, : len(rows)] = True
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
        self.samplers = private_generators(sampling_seed, teacher_ids, Stream.POISSON)
        # checkpoints keep the sampler only when it is seeded: an entropy-seeded state would let a
        # reader of the checkpoint replay which records were in which batch
        self.seeded = sampling_seed is not None
        self.augmenters = [generator(seed, t, Stream.AUGMENT) for t in teacher_ids]

    def __len__(self) -> int:
        return steps_per_epoch(self.sample_rate)

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        state = {"augment": [g.get_state() for g in self.augmenters]}
        return {**state, "poisson": [g.get_state() for g in self.samplers]} if self.seeded else state

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        pairs = [(self.augmenters, state["augment"])]
        if self.seeded and "poisson" in state:
            pairs.append((self.samplers, state["poisson"]))
        for gens, states in pairs:
            for g, saved in zip(gens, states, strict=True):
                g.set_state(saved)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], torch.Tensor]]:
        rows = torch.arange(len(self.samplers)).unsqueeze(1)
        for _ in range(len(self)):
            index, mask = poisson_batch(self.images.shape[1], self.sample_rate, self.samplers)  # (K, B)
            images = self.images[rows, index].unsqueeze(2)  # (K, B, 1, 28, 28) uint8
            theta = None
            if self.augment:
                # each teacher draws for its own records only, so its stream does not depend on the padding
                uniforms = torch.zeros(*index.shape, 4)
                for k, g in enumerate(self.augmenters):
                    count = int(mask[k].sum())
                    uniforms[k, :count] = torch.rand(count, 4, generator=g)
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

