"""The pool stage: validate a pool folder once and record its identity and uid order in the store."""

from __future__ import annotations

from pathlib import Path

from filterbench.harness.pool import Pool
from filterbench.harness.poolcheck import check_pool
from filterbench.harness.store import Artifact, Store
from filterbench.harness.uids import atomic_save_npy


def register_pool(store: Store, pool: Pool, label: str | None = None) -> Artifact:
    """The pool artifact (``pools/<label>-<key>``) for ``pool``, validating and creating it if needed.

    The key hashes the pool's parquet bytes and the names and sizes of its sidecars and tars, so any change
    to the pool gives a new key and invalidates everything downstream.
    """
    description = pool.describe()
    inputs = {"stage": "pool", "pool": description}
    key = store.key_for(inputs)
    label = label or _label(pool.root)
    existing = store.get("pools", label, key)
    if existing is not None:
        return existing
    with store.build("pools", label, key, inputs) as building:
        report = check_pool(pool)
        uids = pool.all_uids()
        atomic_save_npy(building.dir / "uids.npy", uids)
        building.add_output("uids.npy", rows=int(len(uids)))
        shards = [{"stem": s.stem, "rows": s.rows, "offset": s.offset} for s in pool.shards]
        return building.finish({"pool_root": str(pool.root.resolve()), "size": pool.size,
                                "shards": shards, "check": report})


def _label(root: Path) -> str:
    name = root.resolve().name or "pool"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
