"""Per-teacher random streams: everything random for teacher k derives from ``(seed, k, stream)``.

The triple is hashed by numpy's ``SeedSequence`` as three separate words, so runs with seeds
42, 43 and 44 are independent replicates: the guide's ``seed + teacher_id`` made (43, 0) equal
(42, 1). Each use (shuffling, augmentation, reparameterization noise, initial weights, latents) gets its
own generator, so one stream's consumption never shifts another's and a teacher's results do not
depend on which teachers ran beside it.
"""

from __future__ import annotations

import secrets
from enum import IntEnum
from typing import Optional, Sequence

import numpy as np
import torch


class Stream(IntEnum):
    SHUFFLE = 0
    AUGMENT = 1
    NOISE = 2
    INIT = 3
    LATENT = 4
    DROPOUT = 5
    DP_NOISE = 6  # DP-SGD's Gaussian noise, only when a noise seed is asked for (replication, not private)
    POISSON = 7  # DP-SGD's Poisson sampling, likewise


def stream_seed(seed: int, teacher_id: int, stream: Stream) -> int:
    """A 63-bit seed for one stream of one teacher.

    >>> stream_seed(42, 0, Stream.SHUFFLE) == stream_seed(42, 0, Stream.SHUFFLE)
    True
    >>> stream_seed(42, 1, Stream.SHUFFLE) != stream_seed(42, 0, Stream.SHUFFLE)
    True
    >>> stream_seed(43, 0, Stream.SHUFFLE) != stream_seed(42, 1, Stream.SHUFFLE)  # replicates are independent
    True
    """
    state = np.random.SeedSequence([seed, teacher_id, int(stream)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def generator(seed: int, teacher_id: int, stream: Stream) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, teacher_id, stream))


def private_generators(seed: Optional[int], teacher_ids: Sequence[int], stream: Stream) -> list[torch.Generator]:
    """One generator per teacher for privacy randomness (DP noise, Poisson sampling).

    ``seed`` None (a private run): each is seeded from OS entropy (``secrets``) and the seed is kept
    nowhere. A seed (tests, replication; the run is then NOT private): teacher k's ``(seed, k, stream)``.

    >>> a, b = private_generators(None, [0], Stream.DP_NOISE)[0], private_generators(None, [0], Stream.DP_NOISE)[0]
    >>> torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    False
    >>> c, d = private_generators(5, [0, 1], Stream.DP_NOISE)
    >>> torch.equal(torch.rand(4, generator=c), torch.rand(4, generator=generator(5, 0, Stream.DP_NOISE)))
    True
    """
    if seed is None:
        return [torch.Generator().manual_seed(secrets.randbits(63)) for _ in teacher_ids]
    return [generator(seed, t, stream) for t in teacher_ids]
