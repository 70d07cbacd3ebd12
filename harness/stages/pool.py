"""The pool stage: validate a pool folder once and record its identity and uid order in the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from filterbench.harness.atomic import publish, temporary_path
from filterbench.harness.errors import StoreError
from filterbench.harness.pool import Pool
from filterbench.harness.poolcheck import check_pool
from filterbench.harness.store import Artifact, Store, write_json_atomic
from filterbench.harness.uids import UID_DTYPE, atomic_save_npy

#: where the pool's files were last seen, beside the (immutable) manifest: a pool is identified by its bytes, so
#: the same pool copied or rebuilt elsewhere keeps its key, and the store must read it where it is now
LOCATION = "location.json"


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
        if pool_root(existing) != pool.root.resolve():
            write_json_atomic(existing.path / LOCATION, {"pool_root": str(pool.root.resolve())})
        return existing
    with store.build("pools", label, key, inputs) as building:
        if building.done is not None:  # another command registered it while this one waited
            return building.done
        report = _check_into_uids_file(pool, building.dir / "uids.npy")
        building.add_output("uids.npy", rows=pool.size)
        shards = [{"stem": s.stem, "rows": s.rows, "offset": s.offset} for s in pool.shards]
        return building.finish({"pool_root": str(pool.root.resolve()), "size": pool.size,
                                "shards": shards, "check": report})


def _check_into_uids_file(pool: Pool, path: Path) -> dict:
    """Check the pool while its uids stream into ``uids.npy`` (memory-mapped, temporary name, then renamed):
    the pool's uids are parsed once and never held in memory as a whole."""
    if pool.size == 0:  # (numpy cannot map an empty file)
        report = check_pool(pool)
        atomic_save_npy(path, np.zeros(0, dtype=UID_DTYPE))
        return report
    tmp = temporary_path(path)
    sink = np.lib.format.open_memmap(tmp, mode="w+", dtype=UID_DTYPE, shape=(pool.size,))
    try:
        report = check_pool(pool, uids_sink=sink)
        sink.flush()
    except BaseException:
        del sink
        tmp.unlink(missing_ok=True)
        raise
    del sink
    publish(tmp, path)
    return report


def pool_root(artifact: Artifact) -> Path:
    """The folder that holds the pool's files now: the latest registration's, else the first one's."""
    location = artifact.path / LOCATION
    if location.is_file():
        return Path(json.loads(location.read_text())["pool_root"])
    return Path(artifact.manifest["pool_root"])


def pool_shards_dir(artifact: Artifact) -> Path:
    """The pool's ``shards/`` folder, or a clear error when its files are gone from where they were registered."""
    shards = pool_root(artifact) / "shards"
    if not shards.is_dir() or not any(shards.glob("*.tar")):
        raise StoreError(f"pool {artifact.path.name}: no tar shards at {shards} (moved or deleted since it was "
                         "registered); pass the pool's current folder with --pool so the store finds it again")
    return shards


def _label(root: Path) -> str:
    name = root.resolve().name or "pool"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
