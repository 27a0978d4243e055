"""Per-teacher random streams: everything random for teacher k derives from ``(seed, k, stream)``.

The triple is hashed by numpy's ``SeedSequence`` as three separate words, so runs with seeds
42, 43 and 44 are independent replicates: the guide's ``seed + teacher_id`` made (43, 0) equal
(42, 1). Each use (shuffling, augmentation, reparameterization noise, initial weights, latents) gets its
own generator, so one stream's consumption never shifts another's and a teacher's results do not
depend on which teachers ran beside it.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    SHUFFLE = 0
    AUGMENT = 1
    NOISE = 2
    INIT = 3
    LATENT = 4
    DROPOUT = 5


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
