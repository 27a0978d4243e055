"""All teachers' votes on a query set: a (queries, classes) count matrix, cached under ``pate/``.

Teachers are loaded ``teacher_chunk`` at a time and run by ``teachers.teacher_log_probs`` (each with
its own recorded normalization), so memory stays bounded for 250 teachers x 10,000 queries. The cache
``pate/votes_{source}.pt`` holds one row per image of the whole query source and a mask of the rows
counted so far; it is keyed by a hash of the images, the teachers' files and the normalization, so a
re-run votes only on rows not yet counted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from pate_lightning import layout
from pate_lightning.classifiers import loading as teachers
from pate_lightning.errors import PateError
from pate_lightning.io import save_torch, sha256_file, sha256_json
from pate_lightning.privacy import vote_counts

log = logging.getLogger(__name__)

NUM_CLASSES = 10
CACHE_FORMAT = 1


def find_teachers(teachers_dir: Path) -> list[int]:
    """Ids of the teachers with a ``{id}/model.pth`` under ``teachers_dir``, sorted."""
    if not teachers_dir.is_dir():
        raise PateError("teachers folder not found; train the teacher classifiers first or set teachers_dir.",
                        teachers_dir)
    found = teachers.find_teacher_ids(teachers_dir)
    if not found:
        raise PateError("holds no teacher classifier ({id}/model.pth).", teachers_dir)
    return found


def check_teachers(teachers_dir: Path, teacher_ids: Sequence[int]) -> list[int]:
    """The ids, each with an existing ``model.pth``; duplicates and missing files are PateErrors."""
    ids = list(teacher_ids)
    if not ids:
        raise ValueError("teacher_ids is empty; leave it out to use every teacher found")
    duplicates = sorted({t for t in ids if ids.count(t) > 1})
    if duplicates:
        raise ValueError(f"teacher_ids lists teachers {duplicates} more than once")
    missing = [t for t in ids if not layout.classifier_file(teachers_dir, t).is_file()]
    if missing:
        raise PateError(f"no classifier for teachers {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                        f"({len(missing)} of {len(ids)}); expected {{id}}/model.pth.", teachers_dir)
    return ids


def teachers_key(teachers_dir: Path, teacher_ids: Sequence[int], normalization: Optional[str]) -> str:
    """Hash of what decides the votes besides the images: each teacher's file, its id and the normalization."""
    files = {}
    for teacher_id in teacher_ids:
        # report.json records a trained teacher's normalization, which load_teacher_ensemble reads
        paths = (layout.classifier_file(teachers_dir, teacher_id),
                 layout.classifier_report_file(teachers_dir, teacher_id))
        files[str(teacher_id)] = [sha256_file(path) for path in paths if path.is_file()]
    check_distinct_weights(teachers_dir, {t: files[str(t)][0] for t in teacher_ids})
    return sha256_json({"format": CACHE_FORMAT, "teachers": files, "normalization": normalization})


def check_distinct_weights(teachers_dir: Path, weights: dict[int, str]) -> None:
    """Two teachers with byte-identical weights (a copy or a symlink) are one teacher voting twice, while
    the accounting assumes each record changes one vote: refused, naming both.

    >>> check_distinct_weights(Path("nets"), {0: "a", 1: "b"})
    >>> check_distinct_weights(Path("nets"), {0: "a", 1: "b", 2: "a"})
    Traceback (most recent call last):
    ...
    pate_lightning.errors.PateError: nets: teachers 0 and 2 have identical weights (...
    """
    first: dict[str, int] = {}
    for teacher_id, digest in weights.items():
        if digest in first:
            raise PateError(
                f"teachers {first[digest]} and {teacher_id} have identical weights ({first[digest]}/model.pth and "
                f"{teacher_id}/model.pth: a copy or a link): one teacher would vote twice while epsilon is computed "
                "for disjoint teachers. Remove the duplicate or leave it out of teacher_ids.", teachers_dir,
            )
        first[digest] = teacher_id


def images_key(images: torch.Tensor) -> str:
    pixels = images.detach().cpu().float().contiguous().numpy()
    return sha256_json({"shape": list(images.shape), "sha256": hashlib.sha256(pixels.tobytes()).hexdigest()})


@torch.no_grad()
def count_votes(
    teachers_dir: Path,
    teacher_ids: Sequence[int],
    images: torch.Tensor,
    normalization: Optional[str] = None,
    teacher_chunk: int = 25,
    batch_size: int = teachers.CLASSIFY_CHUNK,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Vote counts (Q, 10) int64 of ``teacher_ids`` on ``images`` (Q, 1, 28, 28) in [0, 1].

    Each row sums to the number of teachers. ``teacher_chunk`` teachers are loaded at a time (their
    (k, Q, 10) log-probabilities bound the memory); ``batch_size`` images go through a teacher at once.
    """
    if teacher_chunk < 1 or batch_size < 1:
        raise ValueError(f"teacher_chunk and vote_batch_size must be >= 1, got {teacher_chunk}, {batch_size}")
    ids = list(teacher_ids)
    votes = torch.zeros(images.shape[0], NUM_CLASSES, dtype=torch.long)  # (Q, 10)
    if images.shape[0] == 0:
        return votes
    started = time.perf_counter()
    for start in range(0, len(ids), teacher_chunk):
        chunk = ids[start : start + teacher_chunk]
        ensemble = teachers.load_teacher_ensemble(teachers_dir, chunk, normalization)
        log_probs = teachers.teacher_log_probs(ensemble, images, batch_size, device=device)  # (k, Q, 10)
        votes += vote_counts(log_probs.argmax(dim=-1).cpu(), NUM_CLASSES)
        del ensemble, log_probs
        if len(ids) > teacher_chunk:
            log.info("votes: %d/%d teachers on %d queries (%.0f s)", start + len(chunk), len(ids), len(images),
                     time.perf_counter() - started)
    return votes


@dataclass(frozen=True)
class VoteResult:
    """Votes on the asked queries and how they were obtained."""

    votes: torch.Tensor  # (Q, 10) int64
    computed: int  # rows counted in this run (0: all from the cache)
    seconds: float  # time spent counting them

    @property
    def teacher_images_per_second(self) -> Optional[float]:
        num_teachers = int(self.votes[0].sum()) if len(self.votes) else 0
        return num_teachers * self.computed / self.seconds if self.computed and self.seconds > 0 else None


def _read_cache(path: Path, key: str, num_rows: int, num_teachers: int) -> Optional[dict]:
    """The cache content if it matches ``key``; None if absent or made from other inputs; PateError if corrupt."""
    if not path.is_file():
        return None
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise PateError(f"vote cache cannot be read ({type(error).__name__}); delete it to recount.", path) from None
    if not isinstance(cache, dict) or cache.get("key") != key:
        return None  # other teachers or other images: recount
    votes, counted = cache.get("votes"), cache.get("counted")
    if not (isinstance(votes, torch.Tensor) and isinstance(counted, torch.Tensor)
            and votes.shape == (num_rows, NUM_CLASSES) and counted.shape == (num_rows,)):
        raise PateError(f"vote cache does not hold a ({num_rows}, {NUM_CLASSES}) vote matrix with its mask; "
                        "delete it to recount.", path)
    if votes.dtype != torch.long or counted.dtype != torch.bool or (votes < 0).any():
        raise PateError(f"vote cache holds {votes.dtype} votes{' below 0' if (votes < 0).any() else ''} and a "
                        f"{counted.dtype} mask, not non-negative int64 counts and a bool mask; it was not written "
                        "by pate. Delete it to recount.", path)
    sums = votes[counted].sum(dim=1)
    if (sums != num_teachers).any():
        raise PateError(f"vote cache rows sum to {sorted(set(sums.tolist()))[:5]} votes, not the {num_teachers} "
                        "teachers asked; the file does not belong to these teachers. Delete it to recount.", path)
    return cache


def cached_votes(
    cache_file: Path,
    teachers_dir: Path,
    teacher_ids: Sequence[int],
    images: torch.Tensor,
    asked: torch.Tensor,
    normalization: Optional[str] = None,
    teacher_chunk: int = 25,
    batch_size: int = teachers.CLASSIFY_CHUNK,
    device: str | torch.device = "cpu",
) -> VoteResult:
    """Votes on ``images[asked]``, counting only the rows the cache at ``cache_file`` does not hold yet.

    Args:
        images: (N, 1, 28, 28) the whole query source (the cache has one row per image).
        asked: (Q,) indices of the queries asked.
    """
    key = sha256_json({"teachers": teachers_key(teachers_dir, teacher_ids, normalization),
                       "images": images_key(images), "teacher_ids": list(teacher_ids)})
    cache = _read_cache(cache_file, key, len(images), len(teacher_ids))
    if cache is None:
        cache = {"key": key, "teacher_ids": list(teacher_ids), "normalization": normalization,
                 "votes": torch.zeros(len(images), NUM_CLASSES, dtype=torch.long),
                 "counted": torch.zeros(len(images), dtype=torch.bool)}
    todo = asked[~cache["counted"][asked]]  # (R,)
    seconds = 0.0
    if len(todo):
        started = time.perf_counter()
        cache["votes"][todo] = count_votes(teachers_dir, teacher_ids, images[todo], normalization,
                                           teacher_chunk, batch_size, device)
        seconds = time.perf_counter() - started
        cache["counted"][todo] = True
        save_torch(cache_file, cache)
        log.info("votes: %d teachers x %d queries in %.1f s", len(teacher_ids), len(todo), seconds)
    return VoteResult(cache["votes"][asked].clone(), len(todo), seconds)
