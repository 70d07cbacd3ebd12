"""Reading a DataComp-format pool, shard by shard, loading only what a plugin declared.

Layout (as DataComp's download script produces it)::

    POOL/metadata/<stem>.parquet   uid, text, url, original_width, original_height, clip_*_similarity_score, ...
    POOL/metadata/<stem>.npz       b32_img, b32_txt, l14_img, l14_txt, ... aligned row by row with the parquet
    POOL/shards/<8 digits>.tar     webdataset shards: <key>.jpg, <key>.txt, <key>.json (holds the uid)

*Pool order* is: metadata shards sorted by file name, then rows in file order.  Every per-uid array the harness
writes (scores, counts) is aligned to pool order.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from filterbench.harness.contract import Needs, PoolBatch
from filterbench.harness.errors import PoolError
from filterbench.harness.hashing import content_key, file_digest
from filterbench.harness.uids import UID_DTYPE, hex_to_pairs

POOL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardInfo:
    """One metadata shard: its stem, files, row count and offset in pool order."""

    stem: str
    parquet: Path
    npz: Path
    rows: int
    offset: int


class Pool:
    """A DataComp-format pool folder.

    Args:
        root: the pool folder (holding ``metadata/`` and usually ``shards/``).

    Raises:
        PoolError: when the folder or its metadata is missing or a parquet is unreadable.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.metadata_dir = self.root / "metadata"
        self.shards_dir = self.root / "shards"
        if not self.metadata_dir.is_dir():
            raise PoolError(f"{self.root}: not a pool folder (no metadata/ inside)")
        parquets = sorted(self.metadata_dir.glob("*.parquet"))
        if not parquets:
            raise PoolError(f"{self.metadata_dir}: no .parquet files")
        self.shards = self._index(parquets)
        self.size = sum(s.rows for s in self.shards)
        self._tar_index: dict[str, tuple[str, str]] | None = None
        self._samples = None

    def __getstate__(self) -> dict:
        """A pool travels to remote workers as its folder and shard list; tar indexes are rebuilt there."""
        return {**self.__dict__, "_tar_index": None, "_samples": None}

    @staticmethod
    def _index(parquets: list[Path]) -> list[ShardInfo]:
        shards, offset = [], 0
        for path in parquets:
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except Exception as exc:
                raise PoolError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from None
            shards.append(ShardInfo(path.stem, path, path.with_suffix(".npz"), rows, offset))
            offset += rows
        return shards

    def shard(self, stem: str) -> ShardInfo:
        for info in self.shards:
            if info.stem == stem:
                return info
        raise PoolError(f"{self.root}: no metadata shard {stem!r}")

    # -- column access ---------------------------------------------------------------------------------------
    def read_metadata(self, shard: ShardInfo, columns: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """The ``uid`` column plus ``columns`` of one shard, as numpy arrays."""
        wanted = ["uid", *[c for c in columns if c != "uid"]]
        try:
            table = pq.read_table(shard.parquet, columns=wanted)
        except Exception as exc:
            schema_names = set(pq.read_schema(shard.parquet).names) if shard.parquet.exists() else set()
            missing = [c for c in wanted if c not in schema_names]
            if missing:
                raise PoolError(f"{shard.parquet}: missing metadata column(s) {missing}") from None
            raise PoolError(f"{shard.parquet}: unreadable ({type(exc).__name__}: {exc})") from None
        if table.num_rows != shard.rows:
            raise PoolError(f"{shard.parquet}: read {table.num_rows} rows, footer says {shard.rows}")
        return {name: table.column(name).to_numpy(zero_copy_only=False) for name in wanted}

    def read_features(self, shard: ShardInfo, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Arrays of the shard's ``.npz`` sidecar as float32, checked against the parquet's row count."""
        if not keys:
            return {}
        if not shard.npz.is_file():
            raise PoolError(f"{shard.npz}: missing npz sidecar (needed for {list(keys)})")
        try:
            with np.load(shard.npz, allow_pickle=False) as npz:
                missing = [k for k in keys if k not in npz.files]
                if missing:
                    raise PoolError(f"{shard.npz}: missing array(s) {missing} (has {sorted(npz.files)})")
                arrays = {k: npz[k] for k in keys}
            for key, array in arrays.items():
                if array.dtype.kind not in "fiu":
                    raise PoolError(f"{shard.npz}: array {key!r} has dtype {array.dtype}; expected numbers")
            arrays = {k: np.asarray(a, dtype=np.float32) for k, a in arrays.items()}
        except PoolError:
            raise
        except Exception as exc:
            raise PoolError(f"{shard.npz}: unreadable or truncated npz ({type(exc).__name__}: {exc})") from None
        for key, array in arrays.items():
            if array.ndim != 2 or len(array) != shard.rows:
                raise PoolError(f"{shard.npz}: array {key!r} has shape {array.shape}, but "
                                f"{shard.parquet.name} has {shard.rows} rows")
        return arrays

    def feature_shapes(self, shard: ShardInfo, keys: tuple[str, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
        """Shape and dtype of arrays of the shard's ``.npz``, from their headers only (no array data read),
        checked as :meth:`read_features` checks them."""
        if not shard.npz.is_file():
            raise PoolError(f"{shard.npz}: missing npz sidecar (needed for {list(keys)})")
        try:
            with zipfile.ZipFile(shard.npz) as archive:
                names = {n.removesuffix(".npy"): n for n in archive.namelist()}
                missing = [k for k in keys if k not in names]
                if missing:
                    raise PoolError(f"{shard.npz}: missing array(s) {missing} (has {sorted(names)})")
                shapes = {k: _npy_header(archive, names[k]) for k in keys}
        except PoolError:
            raise
        except Exception as exc:
            raise PoolError(f"{shard.npz}: unreadable or truncated npz ({type(exc).__name__}: {exc})") from None
        for key, (shape, dtype) in shapes.items():
            if np.dtype(dtype).kind not in "fiu":
                raise PoolError(f"{shard.npz}: array {key!r} has dtype {dtype}; expected numbers")
            if len(shape) != 2 or shape[0] != shard.rows:
                raise PoolError(f"{shard.npz}: array {key!r} has shape {shape}, but {shard.parquet.name} has "
                                f"{shard.rows} rows")
        return shapes

    def uids(self, shard: ShardInfo) -> np.ndarray:
        """A shard's uids as ``u8,u8``, validated (32 hex characters)."""
        return hex_to_pairs(self.read_metadata(shard)["uid"], where=str(shard.parquet))

    def batches(self, needs: Needs, shard: ShardInfo) -> PoolBatch:
        """One shard's rows with exactly the declared inputs loaded."""
        meta = self.read_metadata(shard, needs.metadata)
        uid_strings = meta.pop("uid")
        hex_to_pairs(uid_strings, where=str(shard.parquet))  # validates every uid of the shard
        batch = PoolBatch(shard=shard.stem, uids=uid_strings, metadata=meta,
                          features=self.read_features(shard, needs.features))
        if needs.images:  # read and decoded on access, batch by batch
            from filterbench.harness.samples import LazyImages

            batch.images = LazyImages(self.samples(), shard.offset + np.arange(shard.rows), uid_strings, shard.stem)
        return batch

    def samples(self):
        """The pool's :class:`~filterbench.harness.samples.PoolSamples` (every tar indexed once per object)."""
        if self._samples is None:
            from filterbench.harness.samples import PoolSamples

            self._samples = PoolSamples(self)
        return self._samples

    # -- images ------------------------------------------------------------------------------------------------
    def tar_index(self) -> dict[str, tuple[str, str]]:
        """uid -> (tar file name, sample key), built once by reading the ``.json`` members of every tar."""
        if self._tar_index is None:
            index: dict[str, tuple[str, str]] = {}
            for tar_path in sorted(self.shards_dir.glob("*.tar")):
                for key, meta in _iter_tar_json(tar_path):
                    if "uid" in meta:
                        index[meta["uid"]] = (tar_path.name, key)
            self._tar_index = index
        return self._tar_index

    def read_images(self, uids: np.ndarray) -> list:
        """Decoded RGB images for ``uids`` (None where the pool has no image, e.g. a failed download)."""
        from PIL import Image

        index = self.tar_index()
        wanted: dict[str, dict[str, int]] = {}
        for row, uid in enumerate(uids):
            if uid in index:
                tar_name, key = index[uid]
                wanted.setdefault(tar_name, {})[key] = row
        images: list = [None] * len(uids)
        for tar_name, keys in wanted.items():
            path = self.shards_dir / tar_name
            try:
                with tarfile.open(path) as tar:
                    for member in tar:
                        stem, _, ext = member.name.rpartition(".")
                        if stem in keys and ext in ("jpg", "jpeg", "png", "webp"):
                            data = tar.extractfile(member).read()
                            images[keys[stem]] = Image.open(io.BytesIO(data)).convert("RGB")
            except (tarfile.TarError, OSError) as exc:
                raise PoolError(f"{path}: unreadable tar shard ({exc})") from None
        return images

    # -- identity ----------------------------------------------------------------------------------------------
    def all_uids(self, out: np.ndarray | None = None) -> np.ndarray:
        """Every uid in pool order as ``u8,u8``, written into ``out`` when given (e.g. a memory-mapped file)."""
        out = np.empty(self.size, dtype=UID_DTYPE) if out is None else out
        for shard in self.shards:
            out[shard.offset:shard.offset + shard.rows] = self.uids(shard)
        return out

    def describe(self) -> dict:
        """The pool's identity: parquet digests plus names and sizes of sidecars and tars.

        Parquets are hashed in full (they hold the uids and the metadata plugins read); tar files by name and
        size, because hashing terabytes of images would take hours; npz sidecars by size and each member's
        CRC-32 from the zip's central directory (no array data is read), so features recomputed in place with
        the same shapes still change the key (an uncompressed npz keeps its size).  ``check(deep=True)``
        verifies the sidecars fully.
        """
        shards = [{"stem": s.stem, "rows": s.rows, "parquet": file_digest(s.parquet),
                   "npz_bytes": s.npz.stat().st_size if s.npz.exists() else None,
                   "npz_members": _npz_member_crcs(s.npz)} for s in self.shards]
        tars = sorted((p.name, p.stat().st_size) for p in self.shards_dir.glob("*.tar")) \
            if self.shards_dir.is_dir() else []
        return {"format": POOL_FORMAT_VERSION, "size": self.size, "shards": shards, "tars": tars}

    def key(self) -> str:
        return content_key(self.describe())


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], str]:
    with archive.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
    return tuple(shape), dtype.str


def _npz_member_crcs(path: Path) -> list[tuple[str, int, int]] | None:
    """``(name, crc32, size)`` of every array in an npz, read from its zip central directory."""
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return sorted((info.filename, info.CRC, info.file_size) for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise PoolError(f"{path}: unreadable or truncated npz sidecar ({type(exc).__name__}: {exc})") from None


def _iter_tar_json(tar_path: Path) -> Iterator[tuple[str, dict]]:
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    raw = tar.extractfile(member).read()
                    yield member.name[: -len(".json")], json.loads(raw)
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise PoolError(f"{tar_path}: unreadable tar shard ({type(exc).__name__}: {exc})") from None
