"""The teachers' disjoint shards of the training set: partition, validation, metadata.

``shard_indices.json`` maps a teacher id (as a string) to its list of training-set indices.
It is created once from a seed and reused; an existing file is validated before anything
else is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from pate_lightning import layout
from pate_lightning.errors import PateError
from pate_lightning.io import read_json, write_json


def partition(num_examples: int, num_teachers: int, seed: int) -> dict[int, list[int]]:
    """Shuffle ``range(num_examples)`` with ``seed`` and deal it into ``num_teachers`` disjoint shards.

    Shard sizes differ by at most one (60,000 / 250 = 240 each).

    >>> shards = partition(10, 3, seed=0)
    >>> sorted(len(s) for s in shards.values())
    [3, 3, 4]
    >>> sorted(i for s in shards.values() for i in s) == list(range(10))
    True
    """
    if num_teachers < 1 or num_teachers > num_examples:
        raise ValueError(f"num_teachers must be in [1, {num_examples}], got {num_teachers}")
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed)).tolist()
    bounds = [round(k * num_examples / num_teachers) for k in range(num_teachers + 1)]
    return {k: sorted(order[bounds[k] : bounds[k + 1]]) for k in range(num_teachers)}


def validate(raw: object, num_examples: int, path: Path) -> dict[int, list[int]]:
    """Check a loaded ``shard_indices.json``: integer indices in range, no index in two shards."""
    if not isinstance(raw, dict) or not raw:
        raise PateError("must be a non-empty JSON object mapping teacher id to a list of indices.", path)
    shards: dict[int, list[int]] = {}
    owner: dict[int, int] = {}
    for key, indices in raw.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise PateError(f"teacher id {key!r} is not a non-negative integer.", path)
        teacher_id = int(key)
        if not isinstance(indices, list) or not indices:
            raise PateError(f"teacher {teacher_id}: shard must be a non-empty list of indices.", path)
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int):
                raise PateError(f"teacher {teacher_id}: index {index!r} is not an integer.", path)
            if not 0 <= index < num_examples:
                raise PateError(
                    f"teacher {teacher_id}: index {index} is out of range for a training set of {num_examples} images.", path
                )
            if index in owner:
                raise PateError(
                    f"teacher {teacher_id}: index {index} is also in teacher {owner[index]}'s shard; shards must be disjoint.",
                    path,
                )
            owner[index] = teacher_id
        shards[teacher_id] = list(indices)
    return shards


def load_or_create(
    path: str | Path, num_examples: int, num_teachers: Optional[int], seed: int, create: bool = True
) -> dict[int, list[int]]:
    """Read and validate ``path``; create it (atomically) from ``num_teachers`` and ``seed`` when absent.

    An existing file must be the partition those settings make: a run folder partitioned otherwise
    is an error, not silently reused. ``num_teachers`` None (or ``create`` False): the file as it is,
    e.g. one brought from saferlearn, or the partition a later stage must reuse.
    """
    path = Path(path)
    if path.exists():
        shards = validate(read_json(path), num_examples, path)
        if create and num_teachers is not None:
            _check_settings(shards, num_examples, num_teachers, seed, path)
        return shards
    if not create:
        raise PateError("shard file not found; run `pate-lightning fit` or `prepare` first to create it.", path)
    if num_teachers is None:
        raise PateError("shard file not found, and num_teachers is null (use the existing file); "
                        "set --data.num_teachers to create a partition.", path)
    shards = partition(num_examples, num_teachers, seed)
    write_json(path, {str(k): v for k, v in shards.items()})
    return shards


def _check_settings(shards: dict[int, list[int]], num_examples: int, num_teachers: int, seed: int, path: Path) -> None:
    if len(shards) != num_teachers:
        problem = f"holds {len(shards)} shards but num_teachers is {num_teachers}"
    elif shards != partition(num_examples, num_teachers, seed):
        problem = f"is not the partition of {num_examples} images into {num_teachers} shards with seed {seed}"
    else:
        return
    raise PateError(
        f"{problem}: this run folder was partitioned with other settings. To continue it, pass the settings it "
        f"was made with (--data.num_teachers {len(shards)} and its seed), or --data.num_teachers null to use the "
        "file as it is (e.g. one brought from saferlearn); for a new partition use another --data.run_dir.", path,
    )


def select_teachers(
    shards: dict[int, list[int]],
    teacher_ids: Optional[Sequence[int]],
    start_id: Optional[int],
    num_teachers: Optional[int],
    path: Path,
) -> list[int]:
    """The requested teachers: explicit ids, or ``start_id`` + count, or all; unknown ids are an error."""
    if teacher_ids is not None:
        wanted = [int(t) for t in teacher_ids]
    elif start_id is not None:
        count = max(0, max(shards) + 1 - start_id) if num_teachers is None else num_teachers
        wanted = list(range(start_id, start_id + count))
    else:
        wanted = sorted(shards)
    if not wanted:
        how = "teacher_ids is empty" if teacher_ids is not None else f"start_id {start_id}" + (
            f" with count {num_teachers}" if num_teachers is not None else "")
        raise PateError(
            f"{how} selects no teacher (the shard file holds ids {min(shards)}..{max(shards)}); "
            "select at least one, or leave teacher_ids, start_id and count unset for all.", path,
        )
    missing = [t for t in wanted if t not in shards]
    if missing:
        raise PateError(
            f"teacher ids {missing} are not in the shard file (it holds ids {min(shards)}..{max(shards)}).", path
        )
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"teacher ids repeat: {wanted}")
    return wanted


def class_distribution(labels: torch.Tensor, num_classes: int = 10) -> dict[str, int]:
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return {str(c): int(n) for c, n in enumerate(counts)}


def write_metadata(root: Path, teacher_id: int, labels: torch.Tensor, shard_file: Path) -> Path:
    """``teachers/teacher_{id}/metadata.json`` in the seed's format."""
    return write_json(
        layout.metadata_file(root, teacher_id),
        {
            "teacher_id": teacher_id,
            "shard_size": int(labels.numel()),
            "class_distribution": class_distribution(labels),
            "shard_path": str(shard_file),
        },
    )
