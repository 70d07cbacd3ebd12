"""Where each pool sample's files sit inside the pool's tar shards (byte offsets), so the resharder can copy them.

One pass over each tar's headers (plus the small ``.json`` members, which hold the uid) gives, per sample, its
uid and the offset and size of each of its files.  A tar that cannot be read, or a sample without a readable
uid, is logged and skipped: its uids then count as missing, as in DataComp's resharder, and nothing crashes.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filterbench.harness.training import tarformat
from filterbench.harness.uids import UID_DTYPE, hex_to_pairs

log = logging.getLogger("filterbench.train")

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TEXT_EXT = "txt"


def index_tar(path: Path) -> dict[str, np.ndarray]:
    """Offsets of every sample's files in one tar, as arrays (``uid``, ``first``, ``count`` per sample;
    ``ext``, ``offset``, ``size`` per file).  Unreadable tars and uid-less samples are skipped with a warning."""
    samples: dict[str, dict] = {}
    try:
        with open(path, "rb") as handle:
            for name, offset, size in tarformat.scan(handle):
                folder, _, base = name.rpartition("/")
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                entry = samples.setdefault(f"{folder}/{stem}", {"files": [], "uid": None})
                entry["files"].append((ext.lower(), offset, size))
                if ext.lower() == "json":
                    handle.seek(offset)
                    entry["uid"] = _uid_of(handle.read(size))
    except (tarfile.TarError, OSError, ValueError) as exc:
        log.warning("%s: unreadable tar shard skipped (%s: %s)", path, type(exc).__name__, exc)
    return _as_arrays(path, samples)


def _uid_of(raw: bytes) -> str | None:
    try:
        uid = json.loads(raw).get("uid")
    except (ValueError, AttributeError):
        return None
    return uid if isinstance(uid, str) and _HEX32.fullmatch(uid) else None


def _as_arrays(path: Path, samples: dict[str, dict]) -> dict[str, np.ndarray]:
    kept = [s for s in samples.values() if s["uid"] is not None]
    if len(kept) < len(samples):
        log.warning("%s: %d samples without a readable uid skipped", path, len(samples) - len(kept))
    uids = hex_to_pairs([s["uid"] for s in kept], where=str(path))
    files = [f for s in kept for f in s["files"]]
    counts = np.array([len(s["files"]) for s in kept], dtype=np.int64)
    return {"uid": uids, "first": np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64) if kept else counts,
            "count": counts, "ext": np.array([f[0] for f in files], dtype="U8"),
            "offset": np.array([f[1] for f in files], dtype=np.int64),
            "size": np.array([f[2] for f in files], dtype=np.int64)}


def save_index(path: Path, index: dict[str, np.ndarray]) -> None:
    from filterbench.harness.atomic import publish, temporary_path

    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        np.savez(handle, **index)
    publish(tmp, path)


@dataclass
class SampleTable:
    """Pool row -> the files of its sample in the pool's tars (row without a sample: ``sample[row] == -1``).

    Attributes:
        tars: tar file paths, indexed by ``tar_of``.
        sample: per pool row, the sample number or -1.
        tar_of, first, count: per sample, its tar and its slice of the file arrays.
        ext, offset, size: per file.
    """

    tars: list[Path]
    sample: np.ndarray
    tar_of: np.ndarray
    first: np.ndarray
    count: np.ndarray
    ext: np.ndarray
    offset: np.ndarray
    size: np.ndarray

    def available(self) -> np.ndarray:
        """Rows whose sample has an image and a caption: what open_clip_train would not filter out."""
        has_image = np.isin(self.ext, IMAGE_EXTS)
        has_text = self.ext == TEXT_EXT
        owner = np.repeat(np.arange(self.count.size), self.count)
        image_ok = np.bincount(owner, weights=has_image, minlength=self.count.size) > 0
        text_ok = np.bincount(owner, weights=has_text, minlength=self.count.size) > 0
        ok = image_ok & text_ok
        return (self.sample >= 0) & ok[np.maximum(self.sample, 0)] if self.count.size else self.sample >= 0

    def files_of(self, row: int) -> list[tuple[int, str, int, int]]:
        """(tar number, extension, offset, size) of every file of pool row ``row``'s sample."""
        s = int(self.sample[row])
        lo, hi = int(self.first[s]), int(self.first[s] + self.count[s])
        return [(int(self.tar_of[s]), str(self.ext[i]), int(self.offset[i]), int(self.size[i])) for i in range(lo, hi)]


def build_table(tars: list[Path], indexes: list[dict[str, np.ndarray]], pool_uids: np.ndarray) -> SampleTable:
    """Join per-tar indexes with the pool's uid order (a uid found in several tars: the first wins)."""
    uids = np.concatenate([ix["uid"] for ix in indexes]) if indexes else np.zeros(0, UID_DTYPE)
    counts = np.concatenate([ix["count"] for ix in indexes]) if indexes else np.zeros(0, np.int64)
    tar_of = np.concatenate([np.full(ix["uid"].size, t, np.int64) for t, ix in enumerate(indexes)]) \
        if indexes else np.zeros(0, np.int64)
    file_base = np.cumsum([0] + [ix["ext"].size for ix in indexes])
    first = np.concatenate([ix["first"] + file_base[t] for t, ix in enumerate(indexes)]) \
        if indexes else np.zeros(0, np.int64)
    cat = (lambda name, dtype: np.concatenate([ix[name] for ix in indexes]) if indexes else np.zeros(0, dtype))
    order = np.argsort(uids, kind="stable")
    sorted_uids = uids[order]
    pos = np.searchsorted(sorted_uids, pool_uids)
    pos_ok = pos < sorted_uids.size
    found = np.zeros(pool_uids.size, dtype=bool)
    found[pos_ok] = sorted_uids[pos[pos_ok]] == pool_uids[pos_ok]
    sample = np.full(pool_uids.size, -1, dtype=np.int64)
    sample[found] = order[pos[found]]
    return SampleTable(list(tars), sample, tar_of, first, counts, cat("ext", "U8"), cat("offset", np.int64),
                       cat("size", np.int64))
