"""Per-teacher random streams: everything random for teacher k derives from ``(seed, k, stream)``.

The triple is hashed by numpy's ``SeedSequence`` as three separate words, so runs with seeds
42, 43 and 44 are independent replicates: the guide's ``seed + teacher_id`` made (43, 0) equal
(42, 1). Each use (shuffling, augmentation, reparameterization noise, initial weights, latents) gets its
own generator, so one stream's consumption never shifts another's and a teacher's results do not
depend on which teachers ran beside it.

Privacy randomness (DP noise, Poisson sampling, vote noise) comes from ``keyed_generator``: torch's
``manual_seed`` keeps only the low 32 bits of its seed on the CPU (Mersenne Twister), so a seed from
``secrets`` would still leave 2^32 possible noise streams; a keyed generator instead takes its whole
state from SHAKE-256 of a 256-bit key and a counter.
"""

from __future__ import annotations

import functools
import hashlib
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


KEY_BYTES = 32  # 256-bit keys for privacy randomness: twice the 128 bits that put brute force out of reach

# torch's CPU generator state (CPUGeneratorImplState): u64 initial seed, i32 left, i32 seeded, u64 next,
# then the Mersenne Twister's 624 words, each in a u64 slot, then cached-normal fields
_MT_WORDS, _MT_OFFSET = 624, 24
_MT_INIT = 1812433253  # the MT19937 seeding recurrence's multiplier, used to check the layout


@functools.cache
def _mt_state_template() -> torch.Tensor:
    """A fresh CPU generator's state, after checking that the 624 words sit where ``keyed_generator`` writes them."""
    state = torch.Generator().manual_seed(12345).get_state()
    words = np.frombuffer(state.numpy().tobytes(), dtype=np.uint64, count=2, offset=_MT_OFFSET)
    if state.numel() != 5056 or words[0] != 12345 or words[1] != (_MT_INIT * (12345 ^ (12345 >> 30)) + 1) % 2**32:
        raise RuntimeError(
            f"torch {torch.__version__}: the CPU generator's state layout is not the one pate_lightning.seeding "
            "expects, so privacy noise cannot be keyed with 256 bits; report this with your torch version."
        )
    return state


def keyed_generator(key: bytes, counter: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` whose whole state is SHAKE-256 of ``(key, counter)``.

    Counter-based over ``counter`` (e.g. the training step): stream ``(key, s)`` never depends on what
    was drawn at other counters. CPU: all 624 Mersenne Twister words from the hash (19,968 bits;
    ``manual_seed`` would keep 32). CUDA: Philox's 64-bit key and its 64-bit counter offset (a multiple
    of 4) from the hash. Other devices: a CPU generator (draw there and copy).

    >>> key = bytes(KEY_BYTES)
    >>> torch.equal(torch.randn(4, generator=keyed_generator(key, 3)), torch.randn(4, generator=keyed_generator(key, 3)))
    True
    >>> torch.equal(torch.randn(4, generator=keyed_generator(key, 3)), torch.randn(4, generator=keyed_generator(key, 4)))
    False
    """
    if len(key) < 16:
        raise ValueError(f"a privacy key needs at least 128 bits, got {8 * len(key)}")
    device = torch.device(device)
    digest = hashlib.shake_256(key + counter.to_bytes(8, "little")).digest(4 * _MT_WORDS)
    if device.type == "cuda":
        g = torch.Generator(device=device)
        g.manual_seed(int.from_bytes(digest[:8], "little"))
        g.set_offset(int.from_bytes(digest[8:16], "little") & ~3)
        return g
    state = _mt_state_template().numpy().copy()
    words = np.frombuffer(digest, dtype=np.uint32).astype(np.uint64)
    state[_MT_OFFSET: _MT_OFFSET + 8 * _MT_WORDS] = np.frombuffer(words.tobytes(), dtype=np.uint8)
    state[:8] = 0  # initial_seed() would otherwise report the template's seed
    return torch.Generator().set_state(torch.from_numpy(state))


def entropy_generator() -> torch.Generator:
    """A CPU generator keyed from OS entropy (256 bits from ``secrets``); the key is kept nowhere."""
    return keyed_generator(secrets.token_bytes(KEY_BYTES), 0)


def stream_key(seed: int, teacher_id: int, stream: Stream) -> bytes:
    """A 256-bit key for one stream of one teacher, for seeded (NOT private) privacy randomness.

    >>> stream_key(42, 0, Stream.DP_NOISE) != stream_key(42, 1, Stream.DP_NOISE)
    True
    """
    return np.random.SeedSequence([seed, teacher_id, int(stream)]).generate_state(KEY_BYTES // 4, dtype=np.uint32).tobytes()


def private_generators(seed: Optional[int], teacher_ids: Sequence[int], stream: Stream) -> list[torch.Generator]:
    """One generator per teacher for privacy randomness (DP noise, Poisson sampling).

    ``seed`` None (a private run): each is keyed from OS entropy (``entropy_generator``) and the key is
    kept nowhere. A seed (tests, replication; the run is then NOT private): teacher k's ``(seed, k, stream)``.

    >>> a, b = private_generators(None, [0], Stream.DP_NOISE)[0], private_generators(None, [0], Stream.DP_NOISE)[0]
    >>> torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    False
    >>> c, d = private_generators(5, [0, 1], Stream.DP_NOISE)
    >>> torch.equal(torch.rand(4, generator=c), torch.rand(4, generator=generator(5, 0, Stream.DP_NOISE)))
    True
    """
    if seed is None:
        return [entropy_generator() for _ in teacher_ids]
    return [generator(seed, t, stream) for t in teacher_ids]
