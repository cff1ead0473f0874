"""Seeded generators, one independent stream per purpose and ids.

Every random choice of a fleet comes from `generator(seed, purpose, *ids)`, e.g.
`generator(seed, "holdout", client_id)`. The purpose is part of the seed so that two
choices keyed by the same numbers (client 3's holdout, round 3's sample) never share a
stream and so never correlate.
"""

from __future__ import annotations

import zlib

import numpy as np


def purpose_tag(purpose: str) -> int:
    """The 32-bit number that stands for a purpose in a seed (its CRC-32)."""
    return zlib.crc32(purpose.encode())


def generator(seed: int, purpose: str, *ids: int) -> np.random.Generator:
    """A PCG64 generator seeded by (seed, purpose, *ids); same arguments, same stream."""
    if seed < 0 or any(i < 0 for i in ids):
        raise ValueError(f"seeds and ids must be >= 0, got seed={seed}, ids={ids}")
    return np.random.default_rng([int(seed), purpose_tag(purpose), *(int(i) for i in ids)])
