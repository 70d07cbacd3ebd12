"""Pool validation: every problem is reported with the file and row (or uid) at fault."""

from __future__ import annotations

import numpy as np

from filterbench.harness.contract import Needs
from filterbench.harness.errors import PoolError
from filterbench.harness.pool import Pool
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
    """Check that npz sidecars exist where needed and that every array has the parquet's row count."""
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


def check_tars(pool: Pool) -> int:
    """Read every tar shard fully; returns the number of uids with images."""
    return len(pool.tar_index())


def check_pool(pool: Pool, needs: Needs | None = None, deep: bool = False) -> dict:
    """Run the checks; ``deep`` also reads every npz array and tar.  Returns counts for reporting."""
    uids = check_uids(pool)
    check_sidecars(pool, needs if not deep else None)
    report = {"rows": int(len(uids)), "shards": len(pool.shards)}
    if deep and pool.shards_dir.is_dir():
        report["images"] = check_tars(pool)
    return report
