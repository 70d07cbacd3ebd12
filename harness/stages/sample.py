"""The sample stage: score columns aligned to pool order -> counts per uid -> DataComp subset file(s).

Output: ``selections/<sampler>-<key>/counts.npy`` (uint32, shape N, or E x N in schedule mode, aligned to pool
order) and ``subset.npy`` (sorted ``u8,u8``, a uid repeated ``count`` times) or ``subset-seg000.npy`` ... one per
training segment in schedule mode.  The key hashes the sampler's identity, the input score keys, the budget
and the seed.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from filterbench.harness.contract import Budget, Sampler, ScoreTable
from filterbench.harness.errors import PluginError, StoreError
from filterbench.harness.invariants import check_counts
from filterbench.harness.manager import Plugins, get_plugins
from filterbench.harness.provenance import CostMeter
from filterbench.harness.seeding import derive_rng
from filterbench.harness.store import Artifact, Store
from filterbench.harness.uids import atomic_save_npy, expand_counts, hex_to_pairs

SELECTION_SCHEMA_VERSION = 1


def pool_of(store: Store, score_artifacts: list[Artifact]) -> Artifact:
    """The single pool artifact all score artifacts were computed on."""
    keys = {a.manifest["pool_key"] for a in score_artifacts}
    if len(keys) != 1:
        raise StoreError(f"score artifacts come from different pools: {sorted(keys)}")
    return store.find(keys.pop(), kind="pools")


def load_score_table(score_artifacts: list[Artifact], pool_artifact: Artifact) -> ScoreTable:
    """All columns of the score artifacts, as ``<scorer>.<column>``, aligned to pool order and checked."""
    uids = np.load(pool_artifact.path / "uids.npy", allow_pickle=False)
    columns: dict[str, np.ndarray] = {}
    for artifact in score_artifacts:
        manifest = artifact.manifest
        scorer = manifest["inputs"]["scorer"]["name"]
        tables = [pq.read_table(artifact.path / f"parts/{stem}.parquet") for stem in manifest["parts"]]
        part_uids = hex_to_pairs(np.concatenate([t.column("uid").to_numpy(zero_copy_only=False) for t in tables]),
                                 where=str(artifact.path))
        if len(part_uids) != len(uids) or not np.array_equal(part_uids, uids):
            raise StoreError(f"{artifact.path}: score rows are not aligned with pool {pool_artifact.path.name}")
        for column in manifest["columns"]:
            name = f"{scorer}.{column}"
            if name in columns:
                raise StoreError(f"two score inputs both provide column {name!r}; pass only one of them")
            columns[name] = np.concatenate([t.column(column).to_numpy() for t in tables])
    return ScoreTable(columns, uids)


def _check_columns(sampler: Sampler, table: ScoreTable) -> None:
    for column in sampler.score_columns():
        table.column(column)  # raises ParamsError listing the available columns


def selection_stats(counts: np.ndarray) -> dict:
    """Unique kept, total, max repeats and a histogram of counts (per segment in schedule mode)."""
    flat = counts.sum(axis=0) if counts.ndim == 2 else counts
    hist = np.bincount(np.minimum(flat, 10).astype(np.int64), minlength=11)
    stats = {"pool_size": int(flat.size), "unique_uids": int(np.count_nonzero(flat)),
             "total": int(flat.sum(dtype=np.int64)), "max_count": int(flat.max()) if flat.size else 0,
             "count_histogram": {("10+" if i == 10 else str(i)): int(h) for i, h in enumerate(hist)}}
    if counts.ndim == 2:
        stats["segment_totals"] = [int(row.sum(dtype=np.int64)) for row in counts]
        stats["segment_unique"] = [int(np.count_nonzero(row)) for row in counts]
    return stats


def run_sample(store: Store, sampler: Sampler, score_artifacts: list[Artifact], budget: Budget | None = None,
               seed: int = 0, plugins: Plugins | None = None) -> Artifact:
    """Run ``sampler`` on the score artifacts' columns; reuse a completed selection with the same key."""
    plugins = plugins or get_plugins()
    pool_artifact = pool_of(store, score_artifacts)
    pool_size = int(pool_artifact.manifest["size"])
    budget = budget or Budget(samples_seen=pool_size, segments=5, pool_size=pool_size)
    if budget.pool_size != pool_size:
        budget = Budget(budget.samples_seen, budget.segments, pool_size)
    inputs = {"stage": "sample", "schema": SELECTION_SCHEMA_VERSION, "sampler": sampler.identity(),
              "mode": sampler.mode, "scores": sorted(a.key for a in score_artifacts), "pool": pool_artifact.key,
              "budget": {"samples_seen": budget.samples_seen, "segments": budget.segments, "pool_size": pool_size},
              "seed": seed}
    key = store.key_for(inputs)
    done = store.get("selections", sampler.name, key)
    if done is not None:
        return done
    with store.build("selections", sampler.name, key, inputs) as building:
        with CostMeter() as cost:
            table = load_score_table(score_artifacts, pool_artifact)
            _check_columns(sampler, table)
            counts = sampler.sample(table, budget, derive_rng(seed, "sample", sampler.name))
            counts = check_counts(counts, sampler, budget)
            _write_selection(building, counts, table.uids)
        owner = plugins.samplers.owner(sampler.name) if sampler.name in plugins.samplers else None
        return building.finish({"mode": sampler.mode, "pool_key": pool_artifact.key,
                                "budget": inputs["budget"], "stats": selection_stats(counts),
                                "cost": cost.as_dict(), "score_keys": inputs["scores"],
                                "plugin": {"name": sampler.name, "version": sampler.version,
                                           **(plugins.distribution_of(owner) if owner else {})}})


def _write_selection(building, counts: np.ndarray, uids: np.ndarray) -> None:
    atomic_save_npy(building.dir / "counts.npy", counts)
    building.add_output("counts.npy", shape=list(counts.shape))
    rows = counts if counts.ndim == 2 else counts[None, :]
    for e, row in enumerate(rows):
        name = f"subset-seg{e:03d}.npy" if counts.ndim == 2 else "subset.npy"
        subset = expand_counts(uids, row)
        atomic_save_npy(building.dir / name, subset)
        building.add_output(name, rows=int(len(subset)))


def load_counts(artifact: Artifact) -> np.ndarray:
    if artifact.kind != "selections":
        raise PluginError(f"{artifact.path}: not a selection artifact")
    return np.load(artifact.path / "counts.npy", allow_pickle=False)
