"""Random access to the raw samples (image bytes, caption, label) of a pool or a labelled set, by row.

Learned scorers that train a model on raw data (FLYT's reference model, DFN, HYPE) draw seeded batches of rows
and need those rows' files without streaming whole shards.  One pass over each tar's headers gives every
member's byte offset (``harness/training/tarformat.py``); a batch is then a handful of positioned reads.  Batches
are drawn by row number, so what a step sees depends on the seed and the step only, never on worker counts or
on where a killed run stopped.

- :class:`PoolSamples`: pool rows (pool order) -> image bytes and caption, joined by uid through each sample's
  ``.json``.  Rows whose sample is missing from the shards (a failed download) are ``available == False``.
- :class:`LabelledSamples`: rows of a labelled set in DataComp's eval layout (``<split>/*.tar`` with an image and
  a ``.cls`` label per sample), in tar order then member order.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

from filterbench.harness.errors import PoolError
from filterbench.harness.training import tarformat
from filterbench.harness.training.tarindex import IMAGE_EXTS, TEXT_EXT, build_table, index_tar

LABEL_EXT = "cls"


def decode_image(data: bytes, where: str = "image"):
    """RGB PIL image from encoded bytes (jpg, png, webp)."""
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as exc:
        raise PoolError(f"{where}: undecodable image ({type(exc).__name__}: {exc})") from None


def _pread(fds: dict[int, int], paths: list[Path], tar: int, offset: int, size: int) -> bytes:
    if tar not in fds:
        fds[tar] = os.open(paths[tar], os.O_RDONLY)
    data = os.pread(fds[tar], size, offset)
    if len(data) != size:
        raise PoolError(f"{paths[tar]}: short read at offset {offset} (the tar changed after indexing?)")
    return data


class PoolSamples:
    """Image bytes and captions of a pool's rows, read at their byte offsets in the pool's tars.

    Args:
        pool: a :class:`filterbench.harness.pool.Pool` with ``shards/*.tar``.
    """

    def __init__(self, pool):
        tars = sorted(pool.shards_dir.glob("*.tar")) if pool.shards_dir.is_dir() else []
        if not tars:
            raise PoolError(f"{pool.shards_dir}: no tar shards (raw images are needed)")
        self.table = build_table(tars, [index_tar(t) for t in tars], pool.all_uids())
        self.available = self.table.available()

    def read(self, rows: np.ndarray) -> tuple[list[bytes], list[str]]:
        """(image bytes, caption) of each row, in the order given; every row must be available."""
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows[~self.available[rows]]
        if missing.size:
            raise PoolError(f"pool row {int(missing[0])} has no image and caption in the tar shards")
        images, texts = self._files(rows, with_text=True)
        return images, [t.decode("utf-8", "replace") for t in texts]

    def image_bytes(self, rows: np.ndarray) -> list[bytes]:
        """Encoded image bytes of each row (rows must have an image: see ``available``)."""
        return self._files(np.asarray(rows, dtype=np.int64), with_text=False)[0]

    def where(self, row: int) -> str:
        """The tar file holding a row's sample (for error messages)."""
        s = int(self.table.sample[row])
        return str(self.table.tars[int(self.table.tar_of[s])]) if s >= 0 else "(no tar)"

    def _files(self, rows: np.ndarray, with_text: bool) -> tuple[list[bytes], list[bytes]]:
        images: list[bytes] = [b""] * len(rows)
        texts: list[bytes] = [b""] * len(rows)
        fds: dict[int, int] = {}
        try:
            for i, row in enumerate(rows.tolist()):
                for tar, ext, offset, size in self.table.files_of(row):
                    if ext in IMAGE_EXTS and not images[i]:
                        images[i] = _pread(fds, self.table.tars, tar, offset, size)
                    elif with_text and ext == TEXT_EXT:
                        texts[i] = _pread(fds, self.table.tars, tar, offset, size)
        finally:
            for fd in fds.values():
                os.close(fd)
        return images, texts


class LazyImages:
    """The images of some pool rows, read and decoded only when asked for: what ``PoolBatch.images`` holds.

    It behaves like a list of RGB PIL images with ``None`` where the pool has no image (a failed download):
    ``len``, indexing, iteration and slicing (a slice is again lazy).  Scorers that embed images in bulk use
    ``available`` and :meth:`encoded` instead, so that nothing is decoded twice and a shard's images are never
    all in memory at once.

    Args:
        samples: the pool's :class:`PoolSamples`.
        rows: pool rows (pool order positions), one per item.
        uids: the rows' uids, for error messages.
        shard: the metadata shard's stem, for error messages.
    """

    def __init__(self, samples: PoolSamples, rows: np.ndarray, uids: np.ndarray, shard: str):
        self.samples, self.rows, self.uids, self.shard = samples, np.asarray(rows, np.int64), uids, shard
        self.available = samples.available[self.rows] if self.rows.size else np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return LazyImages(self.samples, self.rows[item], self.uids[item], self.shard)
        return self.decoded([int(np.arange(len(self))[item])])[0]

    def __iter__(self):
        return iter(self.decoded(range(len(self))))

    def encoded(self, positions) -> list[bytes | None]:
        """Encoded bytes of the items at ``positions`` (None where there is no image)."""
        positions = np.asarray(list(positions), dtype=np.int64)
        out: list[bytes | None] = [None] * len(positions)
        have = np.flatnonzero(self.available[positions]) if positions.size else positions
        for i, data in zip(have.tolist(), self.samples.image_bytes(self.rows[positions[have]])):
            out[i] = data
        return out

    def describe(self, position: int) -> str:
        """Where an item's image lives: tar, uid and metadata shard (for one-line errors)."""
        return (f"{self.samples.where(int(self.rows[position]))}: uid {self.uids[position]} "
                f"(metadata shard {self.shard})")

    def decoded(self, positions) -> list:
        """RGB PIL images of the items at ``positions`` (None where there is no image)."""
        positions = list(positions)
        return [None if data is None else decode_image(data, self.describe(p))
                for p, data in zip(positions, self.encoded(positions))]


class LabelledSamples:
    """Images and integer labels of a labelled set's split (DataComp's eval layout), by row.

    Args:
        tars: the split's tar files, in order.
    """

    def __init__(self, tars: list[Path]):
        self.tars = list(tars)
        image_at, labels = [], []
        for t, path in enumerate(self.tars):
            for image, label in _labelled_members(path):
                image_at.append((t, *image))
                labels.append(label)
        if not labels:
            raise PoolError(f"labelled set {self.tars[0].parent if self.tars else '?'}: no image + .cls samples")
        self.image_at = np.asarray(image_at, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, rows: np.ndarray) -> list[bytes]:
        """Encoded image bytes of each row, in the order given."""
        fds: dict[int, int] = {}
        try:
            return [_pread(fds, self.tars, int(t), int(o), int(s)) for t, o, s in self.image_at[np.asarray(rows)]]
        finally:
            for fd in fds.values():
                os.close(fd)


def _labelled_members(path: Path) -> list[tuple[tuple[int, int], int]]:
    """((image offset, size), label) per sample of one tar; a sample needs an image and a ``.cls``."""
    samples: dict[str, dict] = {}
    try:
        with open(path, "rb") as handle:
            for name, offset, size in tarformat.scan(handle):
                stem, dot, ext = name.rpartition("/")[2].partition(".")
                entry = samples.setdefault(stem, {})
                if ext.lower() in IMAGE_EXTS:
                    entry["image"] = (offset, size)
                elif ext.lower() == LABEL_EXT:
                    handle.seek(offset)
                    entry["label"] = _label(handle.read(size), path, stem)
    except (tarfile.TarError, OSError) as exc:
        raise PoolError(f"{path}: unreadable tar shard ({type(exc).__name__}: {exc})") from None
    return [(e["image"], e["label"]) for e in samples.values() if "image" in e and "label" in e]


def _label(raw: bytes, path: Path, stem: str) -> int:
    try:
        return int(raw.decode().strip())
    except ValueError:
        raise PoolError(f"{path}: sample {stem} has a non-integer label {raw[:20]!r}") from None
