"""DP-SGD's Gaussian noise for every teacher of a stack, drawn on the training device, counter-based over steps.

Step s's noise comes from ``keyed_generator(key, s)`` (``pate_lightning.seeding``): a generator whose whole
state is a hash of a 256-bit key and the step, so the step counter (``dp_steps``, saved in checkpoints) is
the only state, and a resumed run draws what an uninterrupted one would.

* Private run (no seed): one key from ``secrets`` for the whole stack, kept nowhere; each step fills the
  (K, P) noise of all K teachers and P parameters in ONE draw on the device. Teachers get disjoint parts
  of one stream, so their noises are independent, which is all the per-teacher guarantee needs.
* Seeded run (tests, replication; NOT private): teacher k's key derives from ``(seed, k)`` and it fills
  its own row, one draw per teacher, so teacher k's noise never depends on the teachers beside it.
"""

from __future__ import annotations

import secrets
from typing import Optional

import torch

from pate_lightning.seeding import KEY_BYTES, Stream, keyed_generator, stream_key


class StepNoise:
    """Standard normal noise (K, P) per DP-SGD step, reusing one buffer on the device.

    Args:
        seed: None (private: noise keyed from OS entropy) or a seed (teacher k's stream from ``(seed, k)``).
        teacher_ids: the stack's teachers, in row order.
    """

    def __init__(self, seed: Optional[int], teacher_ids: list[int]) -> None:
        self.shared = seed is None  # one key and one draw for the whole stack
        self.keys = ([secrets.token_bytes(KEY_BYTES)] if self.shared
                     else [stream_key(seed, t, Stream.DP_NOISE) for t in teacher_ids])
        self.rows = len(teacher_ids)
        self._buffer: Optional[torch.Tensor] = None

    def draw(self, step: int, size: int, device: torch.device) -> torch.Tensor:
        """N(0, 1) of shape (K, size) for ``step``; the returned buffer is overwritten at the next call."""
        if self._buffer is None or self._buffer.shape != (self.rows, size) or self._buffer.device != device:
            self._buffer = torch.empty(self.rows, size, device=device)
        targets = [self._buffer] if self.shared else list(self._buffer)  # all rows at once, or row k
        for key, target in zip(self.keys, targets, strict=True):
            generator = keyed_generator(key, step, target.device)
            if generator.device == target.device:
                target.normal_(generator=generator)
            else:  # a device without a keyed generator of its own: draw on the CPU, copy once
                target.copy_(torch.empty(target.shape).normal_(generator=generator))
        return self._buffer
