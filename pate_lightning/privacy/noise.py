"""Where privacy noise comes from: OS entropy unless a seed is asked for (and then the run is not private).

Noise that can be regenerated protects nothing: from a seed and the published outputs one can invert the
release back to the un-noised values. So by default the vote noise and the smooth-sensitivity draw are
keyed from ``secrets`` (the OS's cryptographic entropy: 256 bits for torch, 128 for numpy) and the key is
never written anywhere. A seed stays available for tests and replication; every report then says the run is
reproducible and not private.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from pate_lightning.seeding import entropy_generator

NOT_PRIVATE = "reproducible: NOT PRIVATE"
SEEDED_NOTE = (
    "The privacy noise was drawn from seed {seed}, which is recorded, so anyone can regenerate it and undo it: "
    "this run is reproducible and NOT private. Leave seed null for a private run (noise from OS entropy)."
)
PRIVATE_NOTE = "The privacy noise was drawn from OS entropy (secrets); no seed is recorded anywhere."


@dataclass(frozen=True)
class NoiseSource:
    """Generators for the vote noise and the release draw, and how the report must describe them.

    Args:
        votes: the torch generator of the aggregation noise.
        release: the numpy generator of the smooth-sensitivity draw.
        seed: the seed asked for, or None (OS entropy).
    """

    votes: torch.Generator
    release: np.random.Generator
    seed: Optional[int]

    @property
    def private(self) -> bool:
        return self.seed is None

    def describe(self) -> dict[str, Any]:
        """The report's fields: ``private`` and ``noise_seed_note`` (the seed only when it was asked for)."""
        if self.private:
            return {"private": True, "noise_seed": None, "noise_seed_note": PRIVATE_NOTE}
        return {"private": False, "noise_seed": self.seed, "noise_seed_note": SEEDED_NOTE.format(seed=self.seed)}


def noise_source(seed: Optional[int] = None) -> NoiseSource:
    """Seeded generators (``seed`` given: replication, not private) or ones from OS entropy (``seed=None``).

    >>> a, b = noise_source(), noise_source()
    >>> torch.equal(torch.randn(4, generator=a.votes), torch.randn(4, generator=b.votes)), a.private
    (False, True)
    >>> noise_source(7).describe()["private"]
    False
    """
    if seed is None:
        # torch: the whole Mersenne Twister state from a 256-bit key (manual_seed would keep 32 bits of any seed);
        # numpy: PCG64 from 128 bits; neither key is kept in a variable that outlives this call
        return NoiseSource(entropy_generator(), np.random.default_rng(secrets.randbits(128)), None)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, or null for noise from OS entropy (private), got {seed!r}")
    return NoiseSource(torch.Generator().manual_seed(seed), np.random.default_rng(seed), seed)
