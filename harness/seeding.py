"""Seeded randomness.  Plugins never create their own generators.

Every generator derives from the run seed plus a path of *names* (stage, plugin, shard index, segment, ...)
through :class:`numpy.random.SeedSequence`, so a shard's random stream does not depend on which worker processes
it or on how many workers there are, and two stages never share a stream by accident.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _word(part: object) -> int:
    """Map a path component (int or str) to a 32-bit word; strings are hashed so order matters, not spelling."""
    if isinstance(part, (int, np.integer)) and int(part) >= 0:
        return int(part)
    digest = hashlib.sha256(str(part).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little")


def seed_sequence(seed: int, *path: object) -> np.random.SeedSequence:
    """The SeedSequence for ``seed`` and a path such as ``("score", "negcliploss", 3)``."""
    return np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_word(p) for p in path))


def derive_rng(seed: int, *path: object) -> np.random.Generator:
    """A PCG64 generator for ``seed`` and ``path``; identical inputs give identical streams."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *path)))


def derive_int_seed(seed: int, *path: object) -> int:
    """A 31-bit integer seed (for libraries such as faiss or torch that take an int)."""
    return int(seed_sequence(seed, *path).generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)
