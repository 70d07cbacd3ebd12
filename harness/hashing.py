"""Canonical JSON, content keys and file digests.

Every artifact folder is named by a key that hashes the *canonical inputs* of its stage.  Canonical means: JSON
with sorted keys, compact separators, floats written by ``repr`` (shortest round-trip form), tuples as lists and
numpy scalars as Python numbers.  Timestamps, host names and absolute paths never enter a key.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

KEY_LENGTH = 16  # hex characters of SHA-256 kept in a key; folder names show the first 12


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, np.generic):
        return _normalise(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no inf/nan; keep them distinguishable and deterministic
        return {"__float__": repr(value)}
    if isinstance(value, Path):
        raise TypeError(f"paths must not enter a content key (got {value}); hash the file's digest instead")
    return value


def canonical_json(value: Any) -> str:
    """Serialise ``value`` deterministically (sorted keys, compact, ``repr`` floats)."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_key(value: Any) -> str:
    """The 16-hex-character key of a stage's canonical inputs."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def file_digest(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def bytes_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
