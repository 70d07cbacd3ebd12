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
from filterbench.harness.uids import UID_DTYPE, pairs_to_hex


def check_uids(pool: Pool) -> np.ndarray:
    """Validate every uid (hex, length) and refuse duplicates; returns all uids in pool order."""
    uids = np.empty(pool.size, dtype=UID_DTYPE)
    for shard in pool.shards:
        uids[shard.offset:shard.offset + shard.rows] = pool.uids(shard)
    order = np.argsort(uids, kind="stable")
    ordered = uids[order]
    dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    if dup.size:
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise PoolError(f"duplicate uid {pairs_to_hex(uids[first:first + 1])[0]} at "
                        f"{_locate(pool, first)} and {_locate(pool, second)}")
    return uids


def _locate(pool: Pool, row: int) -> str:
    for shard in pool.shards:
        if shard.offset <= row < shard.offset + shard.rows:
            return f"{shard.parquet} row {row - shard.offset}"
    return f"pool row {row}"


def check_sidecars(pool: Pool, needs: Needs | None = None) -> None:
    """Check that npz sidecars exist where needed and that every array has the parquet's row count.

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
        pool.read_features(shard, tuple(keys))


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


def check_pool(pool: Pool, needs: Needs | None = None, deep: bool = False) -> dict:
    """Run the checks; ``deep`` also reads every npz array and tar.  Returns counts for reporting."""
    uids = check_uids(pool)
    check_sidecars(pool, needs if not deep else None)
    report = {"rows": int(len(uids)), "shards": len(pool.shards)}
    if deep and pool.shards_dir.is_dir():
        report["images"] = check_tars(pool, uids)
    return report
