"""Pool validation: every problem is reported with the file and row (or uid) at fault."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from filterbench.harness.contract import Needs
from filterbench.harness.errors import PoolError
from filterbench.harness.pool import Pool
from filterbench.harness.tarcheck import IncompleteTar, read_complete_tar
from filterbench.harness.uids import pairs_to_hex


def check_uids(pool: Pool, sink: np.ndarray | None = None, max_rows: int = 1 << 26) -> np.ndarray:
    """Validate every uid (hex, length) and refuse duplicates; returns all uids in pool order.

    Uids are written into ``sink`` (e.g. a memory-mapped ``uids.npy``) when given.  The duplicate search sorts
    only the uids' high 64-bit words, ``max_rows`` of them at a time (a range of high words per pass), so it
    needs 8 bytes per uid of one range beside ``sink``, not a sorted copy of every uid.
    """
    uids = pool.all_uids(sink)
    _refuse_duplicates(pool, uids, max_rows)
    return uids


def _refuse_duplicates(pool: Pool, uids: np.ndarray, max_rows: int) -> None:
    """Two equal uids have equal high words: sort the high words range by range (DataComp's uids are hashes,
    so ranges of equal width hold similar counts) and compare the low words only where high words repeat."""
    ranges = max(1, -(-len(uids) // max_rows))
    edges = [(2**64 * i) // ranges for i in range(ranges + 1)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunks = [_in_range(uids["f0"][i:i + max_rows], lo, hi) for i in range(0, len(uids), max_rows)]
        words = chunks[0] if len(chunks) == 1 else np.concatenate(chunks or [np.zeros(0, np.uint64)])
        words.sort()
        repeated = np.unique(words[1:][words[1:] == words[:-1]])
        for word in repeated:  # rare: a real duplicate, or two uids sharing 64 bits
            _duplicate_with_high_word(pool, uids, word)


def _in_range(words: np.ndarray, lo: int, hi: int) -> np.ndarray:
    words = np.asarray(words)
    if lo == 0 and hi == 2**64:
        return words.copy()
    mask = words >= np.uint64(lo)
    if hi < 2**64:
        mask &= words < np.uint64(hi)
    return words[mask]


def _duplicate_with_high_word(pool: Pool, uids: np.ndarray, word: np.uint64) -> None:
    rows = np.flatnonzero(np.asarray(uids["f0"]) == word)
    low = np.asarray(uids["f1"])[rows]
    order = np.argsort(low, kind="stable")
    same = np.flatnonzero(low[order][1:] == low[order][:-1])
    if same.size:
        first, second = sorted((int(rows[order[same[0]]]), int(rows[order[same[0] + 1]])))
        raise PoolError(f"duplicate uid {pairs_to_hex(uids[first:first + 1])[0]} at "
                        f"{_locate(pool, first)} and {_locate(pool, second)}")


def _locate(pool: Pool, row: int) -> str:
    for shard in pool.shards:
        if shard.offset <= row < shard.offset + shard.rows:
            return f"{shard.parquet} row {row - shard.offset}"
    return f"pool row {row}"


def check_sidecars(pool: Pool, needs: Needs | None = None, deep: bool = False) -> None:
    """Check that npz sidecars exist where needed and that every array has the parquet's row count (from the
    arrays' headers; ``deep`` reads every array, as ``pool check --deep`` does).

    A sidecar without its parquet means a metadata shard went missing: the pool would silently be smaller.
    """
    stems = {s.stem for s in pool.shards}
    for npz in sorted(pool.metadata_dir.glob("*.npz")):
        if npz.stem not in stems:
            raise PoolError(f"{npz.with_suffix('.parquet')}: missing (its sidecar {npz.name} is there)")
    for shard in pool.shards:
        if needs is not None and not needs.features:
            continue
        if not shard.npz.exists():
            if needs is None:
                continue  # a pool without features is legal until a plugin needs them
            raise PoolError(f"{shard.npz}: missing npz sidecar (needed for {list(needs.features)})")
        keys = needs.features if needs is not None else _npz_keys(shard.npz)
        if deep:
            pool.read_features(shard, tuple(keys))  # every byte: a damaged member fails its CRC
        else:
            pool.feature_shapes(shard, tuple(keys))  # headers only: shapes and dtypes, no array data


def _npz_keys(path) -> tuple[str, ...]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return tuple(npz.files)
    except Exception as exc:
        raise PoolError(f"{path}: unreadable or truncated npz ({type(exc).__name__}: {exc})") from None


def check_tars(pool: Pool, uids: np.ndarray | None = None) -> int:
    """Read every tar shard and check it against the metadata and its ``_stats.json``; returns the number of
    uids with an image.

    A tar cut at a member boundary reads as a valid, shorter archive (no error from ``tarfile``), and its
    missing rows would then look like failed downloads.  So each tar must end with the end-of-archive marker,
    hold as many samples as its ``_stats.json`` reports ``successes``, and hold only uids of the pool; and the
    ``count`` of all ``_stats.json`` (rows attempted) must add up to the metadata's rows.

    Raises:
        PoolError: naming the tar shard (or the shards folder) and what does not match.
    """
    known = set(pairs_to_hex(uids if uids is not None else pool.all_uids()).tolist())
    for stats_path in sorted(pool.shards_dir.glob("*_stats.json")):
        tar_path = stats_path.with_name(stats_path.name[: -len("_stats.json")] + ".tar")
        if not tar_path.exists():
            raise PoolError(f"{tar_path}: missing (its {stats_path.name} is there)")
    seen: set[str] = set()
    attempted, all_stats = 0, True
    for tar_path in sorted(pool.shards_dir.glob("*.tar")):
        scan = scan_tar(tar_path)
        stats = _tar_stats(tar_path)
        if stats is None:
            all_stats = False
        else:
            attempted += int(stats.get("count", 0))
            if int(stats.get("successes", -1)) != len(scan):
                raise PoolError(f"{tar_path}: {len(scan)} samples in the tar but {tar_path.stem}_stats.json reports "
                                f"{stats.get('successes')} successes (truncated or replaced shard?)")
        for uid in scan:
            if uid.lower() not in known:
                raise PoolError(f"{tar_path}: uid {uid} is in the tar but in no metadata parquet of the pool")
            if uid in seen:
                raise PoolError(f"{tar_path}: uid {uid} has an image in two samples")
            seen.add(uid)
    if all_stats and seen and attempted != len(known):
        raise PoolError(f"{pool.shards_dir}: the tars' _stats.json files count {attempted:,} rows attempted but the "
                        f"metadata has {len(known):,} rows (a missing or extra tar shard?)")
    return len(seen)


def scan_tar(path: Path) -> list[str]:
    """The uids of a tar's samples (from their ``.json`` members), in order; refuses a truncated tar.

    Raises:
        PoolError: for an unreadable tar, a malformed ``.json`` member, or a missing end-of-archive marker.
    """
    uids: list[str] = []

    def collect(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if member.isfile() and member.name.endswith(".json"):
            meta = json.loads(tar.extractfile(member).read())
            if isinstance(meta, dict) and "uid" in meta:
                uids.append(str(meta["uid"]))

    try:
        read_complete_tar(path, collect)
    except IncompleteTar as exc:
        raise PoolError(f"{path}: {exc} ({len(uids)} samples)") from None
    except (tarfile.TarError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise PoolError(f"{path}: unreadable tar shard ({type(exc).__name__}: {exc})") from None
    return uids


def _tar_stats(tar_path: Path) -> dict | None:
    path = tar_path.with_name(f"{tar_path.stem}_stats.json")
    if not path.exists():
        return None
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PoolError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(stats, dict):
        raise PoolError(f"{path}: expected a JSON object")
    return stats


def check_pool(pool: Pool, needs: Needs | None = None, deep: bool = False,
               uids_sink: np.ndarray | None = None) -> dict:
    """Run the checks; ``deep`` also reads every npz array and tar.  Returns counts for reporting.

    ``uids_sink`` receives every uid in pool order (the pool stage passes its memory-mapped ``uids.npy``).
    """
    uids = check_uids(pool, uids_sink)
    check_sidecars(pool, needs if not deep else None, deep)
    report = {"rows": int(len(uids)), "shards": len(pool.shards)}
    if deep and pool.shards_dir.is_dir():
        report["images"] = check_tars(pool, uids)
    return report
