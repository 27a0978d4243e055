"""Per-teacher random streams drawn for every teacher of a stack in one call: a counter-based hash in torch ops.

A stacked step needs the same kind of randomness (dropout masks, reparameterization noise, shuffling,
augmentation, seeded Poisson sampling) for each of K teachers, and teacher k must draw what it draws
alone, so each teacher has its own stream. With ``torch.Generator`` that costs one call per teacher and
step on the host: a generator has one state, and torch's public API has no draw that takes a batch of
generators or of keys (``vmap``'s ``randomness="different"`` still reads one generator). Here value
``i`` of teacher k's draw number ``counter`` is a pure function of ``(key_k, counter, i)``: two rounds of
a 32-bit integer mixer (Wellons' ``lowbias32``) written as elementwise torch ops on an int32 tensor, so
one call gives all K teachers' values, on any device, with a fixed number of kernels whatever K is.
The only state is the counter, so a checkpoint stores one integer and a resumed run draws what an
uninterrupted one would.

The mixer relies on int32 multiplication wrapping modulo 2^32 (two's complement), which torch's CPU and
CUDA kernels do; ``tests/test_counter_streams.py`` checks every function against plain Python integers.
These streams are for seeded randomness only; privacy noise in a private run comes from OS entropy
(``pate_lightning.seeding.keyed_generator``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from pate_lightning.seeding import Stream, stream_seed

_MUL1, _MUL2 = 0x7FEB352D, 0x846CA68B - (1 << 32)  # lowbias32's multipliers, the second as a signed int32
BYTE_LEVELS = 256  # keep masks compare one byte per element: rates are exact in steps of 1/256


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int32 lanes (torch's ``>>`` is arithmetic on signed integers)."""
    return (x >> bits).bitwise_and_((1 << (32 - bits)) - 1)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 (C. Wellons, hash-prospector): a bijection of 32-bit words with low bias, int32 in and out.

    Works in place on ``x`` (callers pass a fresh tensor): about a dozen passes, no temporaries kept.
    """
    x.bitwise_xor_(_shr(x, 16)).mul_(_MUL1)
    x.bitwise_xor_(_shr(x, 15)).mul_(_MUL2)
    return x.bitwise_xor_(_shr(x, 16))


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _mix_int(value: int) -> int:
    """``mix32`` of one Python integer, as a signed int32 (for the counter: no tensor op per draw)."""
    value &= 0xFFFFFFFF
    value = ((value ^ (value >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
    value = ((value ^ (value >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    return _int32(value ^ (value >> 16))


def teacher_keys(seed: int, teacher_ids: Sequence[int], stream: Stream) -> torch.Tensor:
    """(K,) int32: each teacher's key, both halves of ``stream_seed(seed, k, stream)`` mixed into one word.

    >>> keys = teacher_keys(42, [0, 1], Stream.DROPOUT)
    >>> keys.shape, keys.dtype, bool(keys[0] != keys[1])
    (torch.Size([2]), torch.int32, True)
    """
    seeds = [stream_seed(seed, t, stream) for t in teacher_ids]  # once per stack, not per step
    return torch.tensor([_mix_int(_int32(s) ^ _mix_int(s >> 32)) for s in seeds], dtype=torch.int32)


def words(keys: torch.Tensor, counter: int, count: int) -> torch.Tensor:
    """(K, count) int32: words ``0..count-1`` of every teacher's draw number ``counter``, on ``keys``' device.

    Word i is ``mix32(mix32(i ^ r) ^ r)`` with the round key ``r = mix32(key ^ mix32(counter))``: it depends
    only on (key, counter, i), so a teacher's first n words are the same whatever ``count`` (a padded batch
    never shifts a teacher's draws) and whichever teachers share ``keys``. Round one is a bijection of the
    index; where two teachers' first rounds meet, the second XOR of their different round keys parts them.
    """
    counter_word = _mix_int(_int32(counter) ^ _mix_int(counter >> 32))
    round_key = mix32(keys.view(-1, 1) ^ counter_word)  # (K, 1)
    index = torch.arange(count, dtype=torch.int32, device=keys.device)  # (count,)
    first = mix32(index ^ round_key)  # (K, count)
    return mix32(first.bitwise_xor_(round_key))


def uniform(keys: torch.Tensor, counter: int, shape: Sequence[int]) -> torch.Tensor:
    """(K, *shape) float32 uniforms in [0, 1), 24 random bits each (all a float32 in [0, 1) can hold evenly)."""
    n = math.prod(shape)
    return _shr(words(keys, counter, n), 8).float().mul_(2.0**-24).view(len(keys), *shape)


def normal(keys: torch.Tensor, counter: int, shape: Sequence[int]) -> torch.Tensor:
    """(K, *shape) float32 standard normals: Box-Muller on word pairs, element i from words 2 (i // 2) and 2 (i // 2) + 1."""
    n = math.prod(shape)
    pairs = (n + 1) // 2
    w = _shr(words(keys, counter, 2 * pairs), 8).float().view(len(keys), pairs, 2)
    radius = w[..., 0].add(1.0).mul_(2.0**-24).log_().mul_(-2.0).sqrt_()  # u1 in (0, 1]: log never sees 0
    angle = w[..., 1].mul(2.0 * math.pi * 2.0**-24)
    z = torch.stack([radius * torch.cos(angle), radius.mul_(torch.sin(angle))], -1)  # (K, pairs, 2)
    return z.view(len(keys), 2 * pairs)[:, :n].reshape(len(keys), *shape)


def keep_mask(keys: torch.Tensor, counter: int, shape: Sequence[int], drop_rate: float) -> torch.Tensor:
    """(K, *shape) bool: True with probability 1 - ``drop_rate``, one byte per element (four per word).

    ``drop_rate`` must be a multiple of 1/256 (dropout's 0.25 and 0.5 are), so the rate is exact. Element
    i is byte i % 4 of word i // 4 in memory order (little-endian, as on every platform torch ships for).
    """
    threshold = drop_rate * BYTE_LEVELS
    if threshold != int(threshold) or not 0 <= threshold <= BYTE_LEVELS:
        raise ValueError(f"drop_rate must be a multiple of 1/{BYTE_LEVELS} in [0, 1], got {drop_rate!r}")
    n = math.prod(shape)
    octets = words(keys, counter, (n + 3) // 4).view(torch.uint8)  # (K, 4 W)
    return (octets[:, :n] >= int(threshold)).view(len(keys), *shape)


def permutation(keys: torch.Tensor, counter: int, size: int) -> torch.Tensor:
    """(K, size) int64: a random order of ``range(size)`` per teacher (a stable sort of its words)."""
    return torch.sort(words(keys, counter, size), dim=1, stable=True).indices


class TeacherStreams:
    """One kind of seeded randomness for a stack: per-teacher keys and a draw counter shared by all teachers.

    Each call of ``next_counter`` numbers one draw of every teacher; teachers that step together (a
    stack) and a teacher stepping alone count alike, so teacher k's draws do not depend on the stack.

    Args:
        seed: the base seed (teacher k's key derives from ``(seed, k, stream)``).
        teacher_ids: the stack's teachers, in row order.
        stream: which kind of randomness.
    """

    def __init__(self, seed: int, teacher_ids: Sequence[int], stream: Stream) -> None:
        self.keys = teacher_keys(seed, teacher_ids, stream)  # (K,) on the CPU
        self.count = 0
        self._device_keys: dict[torch.device, torch.Tensor] = {}

    def next_counter(self) -> int:
        self.count += 1
        return self.count - 1

    def on(self, device: torch.device | str) -> torch.Tensor:
        """The keys on ``device``, copied there once."""
        device = torch.device(device)
        if device not in self._device_keys:
            self._device_keys[device] = self.keys.to(device)
        return self._device_keys[device]

    def get_state(self) -> int:
        return self.count

    def set_state(self, count: int) -> None:
        self.count = int(count)
