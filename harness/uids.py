"""128-bit uids and DataComp subset files.

A uid is 32 hex characters.  Subset files store it as a numpy structured array of dtype ``u8,u8`` where
``f0`` (hi) is the integer value of the FIRST 16 hex characters and ``f1`` (lo) of the last 16, sorted
ascending (numpy sorts structured arrays field by field, i.e. by the 128-bit value).  A uid selected ``k``
times appears ``k`` times.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from filterbench.harness.errors import PoolError, SubsetError

UID_DTYPE = np.dtype("u8,u8")
_HEX_VALUES = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_VALUES[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_VALUES[_c] = 10 + _i


def hex_to_pairs(uids: Iterable[str] | np.ndarray, where: str = "") -> np.ndarray:
    """Convert 32-hex uid strings to a ``u8,u8`` array (vectorised).

    Raises:
        PoolError: naming ``where`` (file), the row and the offending uid, for a uid that is not 32 hex chars.
    """
    strings = np.asarray(uids, dtype=object)
    if strings.size == 0:
        return np.zeros(0, dtype=UID_DTYPE)
    lengths = _lengths(strings)
    bad = np.flatnonzero(lengths != 32)
    if bad.size:
        raise PoolError(f"{where or 'uids'}: row {bad[0]}: uid {strings[bad[0]]!r} is not 32 hex characters")
    raw = np.frombuffer("".join(strings.tolist()).encode("ascii", errors="replace"), dtype=np.uint8)
    nibbles = _HEX_VALUES[raw].reshape(-1, 32)
    bad_rows = np.flatnonzero((nibbles == 255).any(axis=1))
    if bad_rows.size:
        raise PoolError(f"{where or 'uids'}: row {bad_rows[0]}: uid {strings[bad_rows[0]]!r} is not hexadecimal")
    octets = (nibbles[:, 0::2].astype(np.uint8) << 4) | nibbles[:, 1::2]
    words = octets.reshape(-1, 2, 8).copy().view(">u8").reshape(-1, 2)  # big-endian: first hex char = high bits
    out = np.empty(len(words), dtype=UID_DTYPE)
    out["f0"], out["f1"] = words[:, 0], words[:, 1]
    return out


def _lengths(strings: np.ndarray) -> np.ndarray:
    """Characters per uid (-1 for a value that is not a string), in C through Arrow when every value is a
    string (a Python loop costs 1 us per uid: most of a shard's scoring at 10M uids per core-hour)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        array = pa.array(strings, type=pa.string())
    except (pa.ArrowException, TypeError, ValueError):
        array = None
    if array is None or array.null_count:
        return np.fromiter((len(s) if isinstance(s, str) else -1 for s in strings), dtype=np.int64,
                           count=strings.size)
    return pc.utf8_length(array).to_numpy(zero_copy_only=False).astype(np.int64)


def pairs_to_hex(pairs: np.ndarray) -> np.ndarray:
    """Convert a ``u8,u8`` array back to 32-hex lowercase strings (numpy unicode array)."""
    words = np.stack([pairs["f0"], pairs["f1"]], axis=1).astype(">u8")
    octets = words.view(np.uint8).reshape(-1, 16)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = np.empty((len(octets), 32), dtype=np.uint8)
    chars[:, 0::2], chars[:, 1::2] = digits[octets >> 4], digits[octets & 15]
    return chars.view("S32").reshape(-1).astype("U32")


def expand_counts(pairs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The DataComp subset for ``counts``: each uid repeated ``count`` times, sorted by 128-bit value."""
    if len(pairs) != len(counts):
        raise SubsetError(f"{len(pairs)} uids but {len(counts)} counts")
    counts = np.asarray(counts)
    if counts.size and counts.max() <= 1:  # a subset: a mask, without an int64 copy of the counts
        selected = np.asarray(pairs)[counts.astype(bool)]
    else:
        selected = np.repeat(pairs, counts.astype(np.int64))
    selected.sort(kind="stable")  # in place: no second copy of the kept uids
    return selected


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as .npy to a temporary name in the same folder, then rename it into place."""
    from filterbench.harness.atomic import publish, temporary_path

    path = Path(path)
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    publish(tmp, path)


def write_subset(path: str | Path, pairs: np.ndarray, counts: np.ndarray | None = None) -> int:
    """Write a DataComp subset file (sorted ``u8,u8``); returns the number of entries."""
    subset = np.sort(pairs.astype(UID_DTYPE), kind="stable") if counts is None else expand_counts(pairs, counts)
    atomic_save_npy(path, subset)
    return len(subset)


def read_subset(path: str | Path) -> np.ndarray:
    """Read and check a subset file (.npy or raw ``u8,u8`` memmap, as DataComp's resharder accepts).

    Raises:
        SubsetError: for a missing file, a wrong dtype, a size that is not a multiple of 16 bytes, or an
            unsorted array (naming the first out-of-order position).
    """
    path = Path(path)
    if not path.is_file():
        raise SubsetError(f"{path}: subset file not found")
    with open(path, "rb") as handle:
        is_npy = handle.read(6) == b"\x93NUMPY"
    try:
        if is_npy:
            subset = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            if path.stat().st_size % UID_DTYPE.itemsize:
                raise SubsetError(f"{path}: raw subset size {path.stat().st_size} is not a multiple of 16 bytes")
            subset = np.memmap(path, dtype=UID_DTYPE, mode="r")
    except (ValueError, OSError) as exc:
        raise SubsetError(f"{path}: unreadable subset file: {exc}") from None
    if subset.dtype != UID_DTYPE or subset.ndim != 1:
        raise SubsetError(f"{path}: subset dtype {subset.dtype} shape {subset.shape}; expected 1-D {UID_DTYPE}")
    check_sorted(subset, str(path))
    return subset


def check_sorted(subset: np.ndarray, where: str) -> None:
    """Refuse an unsorted subset: DataComp's resharder binary-searches it and would silently drop rows."""
    hi, lo = subset["f0"], subset["f1"]
    descending = (hi[1:] < hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] < lo[:-1]))
    bad = np.flatnonzero(descending)
    if bad.size:
        raise SubsetError(f"{where}: subset is not sorted at position {bad[0] + 1} "
                          f"({pairs_to_hex(subset[bad[0]:bad[0] + 2]).tolist()})")
