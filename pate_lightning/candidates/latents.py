"""``LatentDataModule``: each teacher's candidate pool as batches of latent vectors.

It is a ``ShardDataModule`` (the runner's ``.selected``/``.shards``/``.run_dir``, and the shard
images the memorization check needs) whose predict batches are latents drawn per teacher from
its own generator, so teacher k's pool is the same whichever teachers share its group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch

from pate_lightning import layout
from pate_lightning.data.datamodule import ShardDataModule
from pate_lightning.errors import PateError
from pate_lightning.generators.decoders import DecoderSpec, decoder_spec
from pate_lightning.io import load_state_dict
from pate_lightning.seeding import Stream, generator

MIX_ALPHA = (0.6, 1.0)  # latent mixing weight range: alpha * z1 + (1 - alpha) * z2


def draw_latents(count: int, latent_dim: int, mixing: float, noise: float, gen: torch.Generator) -> torch.Tensor:
    """``count`` latents (count, latent_dim): prior draws, the first ``round(mixing * count)`` mixed, all jittered.

    Mixed rows are ``alpha * z1 + (1 - alpha) * z2`` with a fresh prior draw ``z2`` and
    ``alpha ~ U[0.6, 1.0]`` (interpolation towards another sample, for diversity); then every
    row gets ``z += noise * eps``. The draw order is fixed, so equal generators give equal latents.

    >>> z = draw_latents(4, 3, 0.0, 0.0, torch.Generator().manual_seed(0))
    >>> torch.equal(z, torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    True
    """
    z = torch.randn(count, latent_dim, generator=gen)  # (B, L)
    mixed = int(round(mixing * count))
    if mixed:
        partner = torch.randn(mixed, latent_dim, generator=gen)  # (M, L)
        low, high = MIX_ALPHA
        alpha = low + (high - low) * torch.rand(mixed, 1, generator=gen)  # (M, 1)
        z[:mixed] = alpha * z[:mixed] + (1 - alpha) * partner
    if noise:
        z += noise * torch.randn(count, latent_dim, generator=gen)
    return z


def requested_classes(class_counts: Sequence[int]) -> torch.Tensor:
    """The class of each candidate, round-robin so every batch is as balanced as the counts allow.

    >>> requested_classes([2, 1, 3]).tolist()
    [0, 1, 2, 0, 2, 2]
    """
    counts = torch.as_tensor(list(class_counts), dtype=torch.long)
    if counts.dim() != 1 or (counts < 0).any() or counts.sum() == 0:
        raise ValueError(f"class_counts must be counts >= 0, not all zero; got {list(class_counts)}")
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)  # class by class
    rank = torch.arange(len(labels)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return labels[torch.sort(rank, stable=True).indices]


def balanced_counts(pool_size: int, num_classes: int) -> list[int]:
    """``pool_size`` split over the classes, the remainder to the lowest classes.

    >>> balanced_counts(23, 10)
    [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    """
    return [pool_size // num_classes + (c < pool_size % num_classes) for c in range(num_classes)]


class LatentLoader:
    """Yields latent batches (K, B, latent_dim): ``pool_size`` latents per teacher in batches of ``batch_size``.

    With ``classes`` (the requested class of each of the pool's candidates, for a conditional
    decoder) a batch is ``(latents, classes (K, B))``.
    """

    def __init__(
        self, teacher_ids: list[int], latent_dim: int, pool_size: int, batch_size: int,
        mixing: float, noise: float, seed: int, classes: Optional[torch.Tensor] = None,
    ) -> None:
        self.teacher_ids, self.latent_dim = list(teacher_ids), latent_dim
        self.pool_size, self.batch_size = pool_size, batch_size
        self.mixing, self.noise, self.seed = mixing, noise, seed
        if classes is not None and len(classes) != pool_size:
            raise ValueError(f"{len(classes)} requested classes for a pool of {pool_size}")
        self.classes = classes

    def __len__(self) -> int:
        return -(-self.pool_size // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        gens = [generator(self.seed, t, Stream.LATENT) for t in self.teacher_ids]  # fresh: reruns repeat
        for start in range(0, self.pool_size, self.batch_size):
            count = min(self.batch_size, self.pool_size - start)
            z = torch.stack([draw_latents(count, self.latent_dim, self.mixing, self.noise, g) for g in gens])
            if self.classes is None:
                yield z
            else:
                yield z, self.classes[start : start + count].expand(len(gens), count)


class LatentDataModule(ShardDataModule):
    """Latent batches for ``CandidateGenerator``, plus the teachers' decoders and shards.

    The shard partition must exist already (it is the one the VAEs were trained on); this
    module never creates one.

    Args:
        data_dir: where the dataset files live (the shard images, for the memorization check).
        dataset: ``mnist``, ``fashion_mnist``, ``kmnist`` or ``emnist``.
        run_dir: the run directory holding ``shard_indices.json`` and ``teacher_vaes/``.
        teacher_ids: teachers to generate for (default all); set per group by the runner.
        start_id: first teacher when ``teacher_ids`` is not given.
        count: number of teachers from ``start_id``.
        vaes_dir: folder of ``teacher_{id}/decoder.pth``, relative to ``run_dir`` unless absolute.
        pool_size: candidates per teacher (the guide's 20000).
        batch_size: latents per teacher per predict batch (memory, not results, except the draw order).
        latent_dim: expected latent size; None = read from each decoder, an int = checked against it.
        latent_mixing: fraction of each batch that is a mix of two latents (the guide's 0.3).
        latent_noise: scale of the Gaussian jitter added to every latent (the guide's 0.1).
        seed: generation seed (the guide's 123); teacher k draws from streams of ``(seed, k)``.
        class_counts: candidates asked per class of a conditional decoder (default: ``pool_size``
            split evenly); their sum is the pool size. Ignored by unconditional decoders.
    """

    def __init__(
        self,
        data_dir: str = "data",
        dataset: str = "mnist",
        run_dir: str = ".",
        teacher_ids: Optional[list[int]] = None,
        start_id: Optional[int] = None,
        count: Optional[int] = None,
        vaes_dir: str = "teacher_vaes",
        pool_size: int = 20000,
        batch_size: int = 500,
        latent_dim: Optional[int] = None,
        latent_mixing: float = 0.3,
        latent_noise: float = 0.1,
        seed: int = 123,
        class_counts: Optional[list[int]] = None,
    ) -> None:
        super().__init__(  # num_teachers None: the partition the VAEs were trained on, as it is
            data_dir=data_dir, dataset=dataset, run_dir=run_dir, num_teachers=None, teacher_ids=teacher_ids,
            start_id=start_id, count=count, batch_size=batch_size, augment=False, seed=seed,
        )
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if latent_dim is not None and latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1 or None, got {latent_dim}")
        if not 0.0 <= latent_mixing <= 1.0:
            raise ValueError(f"latent_mixing must lie in [0, 1], got {latent_mixing}")
        if latent_noise < 0:
            raise ValueError(f"latent_noise must be >= 0, got {latent_noise}")
        if class_counts is not None:
            requested_classes(class_counts)  # checked now, not at the first batch
            pool_size = sum(class_counts)
        self.save_hyperparameters()
        self.hparams.pool_size = pool_size
        self.decoder_shapes: dict[int, DecoderSpec] = {}

    def decoder_path(self, teacher_id: int) -> Path:
        return Path(self.run_dir) / self.hparams.vaes_dir / f"teacher_{teacher_id}" / "decoder.pth"

    def setup(self, stage: str = "predict") -> None:
        path = layout.shard_file(self.run_dir)
        if not path.exists():
            raise PateError(
                "shard file not found: generation needs the partition the VAEs were trained on; "
                "run `pate-lightning fit --config configs/teacher_vae.yaml` first.", path,
            )
        super().setup(stage)
        for teacher_id in self.selected:  # every decoder checked before any teacher's output is written
            if teacher_id not in self.decoder_shapes:
                self.decoder_shapes[teacher_id] = self._decoder_shape(teacher_id, self._load_decoder(teacher_id))

    def _load_decoder(self, teacher_id: int) -> dict[str, torch.Tensor]:
        return load_state_dict(self.decoder_path(teacher_id), f"teacher {teacher_id} decoder")

    def _decoder_shape(self, teacher_id: int, state: dict[str, torch.Tensor]) -> DecoderSpec:
        path = self.decoder_path(teacher_id)
        try:
            spec = decoder_spec(state)
        except ValueError as error:
            raise PateError(f"teacher {teacher_id}: {error}, as written by `pate-lightning fit`.", path) from None
        latent_dim = spec.latent_dim
        expected = self.hparams.latent_dim
        if expected is not None and latent_dim != expected:
            raise PateError(
                f"teacher {teacher_id}: decoder has latent size {latent_dim} but latent_dim is set to {expected}; "
                "set --data.latent_dim to the decoder's size or leave it unset (read from the weights).", path,
            )
        return spec

    @property
    def latent_dim(self) -> int:
        shapes = {self.decoder_shapes[t] for t in self.selected}
        if len(shapes) != 1:
            detail = ", ".join(f"teacher {t}: {self.decoder_shapes[t]}" for t in self.selected)
            raise PateError(
                f"teachers {self.selected} have decoders of different sizes ({detail}) and cannot be stacked "
                "in one group; run with --ensemble_size 1.", self.run_dir / self.hparams.vaes_dir,
            )
        return shapes.pop().latent_dim

    @property
    def num_classes(self) -> int:
        _ = self.latent_dim  # equal specs across the group, or a clear error
        return self.decoder_shapes[self.selected[0]].num_classes

    def requested(self) -> Optional[torch.Tensor]:
        """The class asked of each candidate (pool_size,), or None for unconditional decoders."""
        if not self.num_classes:
            return None
        counts = self.hparams.class_counts or balanced_counts(self.hparams.pool_size, self.num_classes)
        if len(counts) != self.num_classes:
            raise PateError(f"class_counts has {len(counts)} entries, the decoders have {self.num_classes} classes.", self.run_dir)
        return requested_classes(counts)

    def decoder_states(self) -> list[dict[str, torch.Tensor]]:
        """The selected teachers' decoder state_dicts, in ``selected`` order (loaded now, not kept)."""
        _ = self.latent_dim  # same sizes across the group, or a clear error
        return [self._load_decoder(t) for t in self.selected]

    def predict_dataloader(self) -> LatentLoader:
        return LatentLoader(
            self.selected, self.latent_dim, self.hparams.pool_size, self.hparams.batch_size,
            self.hparams.latent_mixing, self.hparams.latent_noise, self.hparams.seed, self.requested(),
        )

    def generation_settings(self, teacher_id: int) -> dict[str, Any]:
        """What determines teacher ``teacher_id``'s pool, for reports and the candidates file."""
        return {
            "pool_size": self.hparams.pool_size,
            "latent_dim": self.decoder_shapes[teacher_id].latent_dim,
            "architecture": self.decoder_shapes[teacher_id].architecture,
            "conditional": self.decoder_shapes[teacher_id].conditional,
            "class_counts": None if self.requested() is None else torch.bincount(self.requested()).tolist(),
            "latent_mixing": self.hparams.latent_mixing,
            "latent_noise": self.hparams.latent_noise,
            "mix_alpha_range": list(MIX_ALPHA),
            "batch_size": self.hparams.batch_size,
            "seed": self.hparams.seed,
            "teacher_seed": [self.hparams.seed, teacher_id],
        }

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch  # latents need no augmentation
