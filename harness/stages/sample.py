"""The sample stage: score columns aligned to pool order -> counts per uid -> DataComp subset file(s).

Output: ``selections/<sampler>-<key>/counts.npy`` (uint32, shape N, or E x N in schedule mode, aligned to pool
order) and ``subset.npy`` (sorted ``u8,u8``, a uid repeated ``count`` times) or ``subset-seg000.npy`` ... one per
training segment in schedule mode.  The key hashes the sampler's identity, the input score keys, the budget
and the seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from filterbench.harness import cut as cut_module
from filterbench.harness.contract import Budget, Cut, Sampler, ScoreTable
from filterbench.harness.executor import Executor, InlineExecutor
from filterbench.harness.errors import PluginError, StoreError, plugin_call
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


def load_score_table(score_artifacts: list[Artifact], pool_artifact: Artifact,
                     scratch: Path | None = None) -> ScoreTable:
    """All columns of the score artifacts, as ``<scorer>.<column>``, aligned to pool order and checked.

    Parts are read one at a time.  With ``scratch`` (a folder the caller removes afterwards), each column is
    written there as .npy and returned memory-mapped, read-only, with the pool's uids mapped the same way: a
    sampler that scans a column in chunks (``top_fraction``'s radix select) then never holds a 12.8B-row
    column in memory.  Without it the columns are ordinary arrays.
    """
    uids = np.load(pool_artifact.path / "uids.npy", allow_pickle=False, mmap_mode="r" if scratch else None)
    columns: dict[str, np.ndarray] = {}
    for artifact in score_artifacts:
        manifest = artifact.manifest
        scorer = manifest["inputs"]["scorer"]["name"]
        names = {column: f"{scorer}.{column}" for column in manifest["columns"]}
        for name in names.values():
            if name in columns:
                raise StoreError(f"two score inputs both provide column {name!r}; pass only one of them")
        sinks = {column: _column_sink(scratch, name, len(uids)) for column, name in names.items()}
        offset = 0
        for stem in manifest["parts"]:
            table = pq.read_table(artifact.path / f"parts/{stem}.parquet")
            part_uids = hex_to_pairs(table.column("uid").to_numpy(zero_copy_only=False), where=str(artifact.path))
            end = offset + len(part_uids)
            if end > len(uids) or not np.array_equal(part_uids, uids[offset:end]):
                raise StoreError(f"{artifact.path}: score rows of part {stem} are not aligned with pool "
                                 f"{pool_artifact.path.name}")
            for column, sink in sinks.items():
                sink[offset:end] = table.column(column).to_numpy()
            offset = end
        if offset != len(uids):
            raise StoreError(f"{artifact.path}: {offset} score rows for a pool of {len(uids)} "
                             f"({pool_artifact.path.name})")
        for column, sink in sinks.items():
            columns[names[column]] = _seal(sink)
    return ScoreTable(columns, uids)


def _column_sink(scratch: Path | None, name: str, rows: int) -> np.ndarray:
    if scratch is None or rows == 0:  # (numpy cannot map an empty file)
        return np.empty(rows, dtype=np.float32)
    scratch.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(scratch / f"{name}.npy", mode="w+", dtype=np.float32, shape=(rows,))


def _seal(sink: np.ndarray) -> np.ndarray:
    """A filled column: memory-mapped ones are flushed and reopened read-only (a sampler cannot write to them)."""
    if not isinstance(sink, np.memmap):
        return sink
    sink.flush()
    return np.load(sink.filename, allow_pickle=False, mmap_mode="r")


def _check_columns(sampler: Sampler, table: ScoreTable) -> None:
    for column in sampler.score_columns():
        table.column(column)  # raises ParamsError listing the available columns


def selection_stats(counts: np.ndarray) -> dict:
    """Unique kept, total, max repeats and a histogram of counts (per segment in schedule mode)."""
    flat = counts.sum(axis=0) if counts.ndim == 2 else counts
    hist = np.zeros(11, dtype=np.int64)
    for start in range(0, flat.size, 1 << 24):  # in chunks: a 50M-row selection needs no int64 copy
        hist += np.bincount(np.minimum(flat[start:start + (1 << 24)], 10), minlength=11)
    stats = {"pool_size": int(flat.size), "unique_uids": int(np.count_nonzero(flat)),
             "total": int(flat.sum(dtype=np.int64)), "max_count": int(flat.max()) if flat.size else 0,
             "count_histogram": {("10+" if i == 10 else str(i)): int(h) for i, h in enumerate(hist)}}
    if counts.ndim == 2:
        stats["segment_totals"] = [int(row.sum(dtype=np.int64)) for row in counts]
        stats["segment_unique"] = [int(np.count_nonzero(row)) for row in counts]
    return stats


def run_sample(store: Store, sampler: Sampler, score_artifacts: list[Artifact], budget: Budget | None = None,
               seed: int = 0, plugins: Plugins | None = None, executor: Executor | None = None,
               progress: bool = False) -> Artifact:
    """Run ``sampler`` on the score artifacts' columns; reuse a completed selection with the same key.

    A sampler that states its selection as a :class:`~filterbench.harness.contract.Cut` (``top_fraction``,
    ``threshold``) is computed as map + reduce over the score parts on ``executor`` (default: this process),
    never holding a score column; any other sampler gets the columns memory-mapped (:func:`load_score_table`).
    """
    plugins = plugins or get_plugins()
    executor = executor or InlineExecutor()
    store.consume(*score_artifacts)  # a score part edited after completion must not reach a selection
    pool_artifact = pool_of(store, score_artifacts)
    store.consume(pool_artifact)
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
        if building.done is not None:
            return building.done
        scratch = building.dir / "scratch"  # memory-mapped score columns, removed before the folder completes
        try:
            with CostMeter() as cost:
                cut = sampler.cut(budget) if sampler.mode == "subset" else None
                if cut is not None:
                    counts, uids = run_cut(cut, score_artifacts, pool_artifact, scratch, executor, progress)
                else:
                    table = load_score_table(score_artifacts, pool_artifact, scratch)
                    _check_columns(sampler, table)
                    with plugin_call("sampler", sampler.name, f"on {len(table):,} uids"):
                        counts = sampler.sample(table, budget, derive_rng(seed, "sample", sampler.name))
                    uids = table.uids
                counts = check_counts(counts, sampler, budget)
                _write_selection(building, counts, uids)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        owner = plugins.samplers.owner(sampler.name) if sampler.name in plugins.samplers else None
        return building.finish({"mode": sampler.mode, "pool_key": pool_artifact.key,
                                "budget": inputs["budget"], "stats": selection_stats(counts),
                                "cost": cost.as_dict(), "score_keys": inputs["scores"],
                                "plugin": {"name": sampler.name, "version": sampler.version,
                                           **(plugins.distribution_of(owner) if owner else {})}})


def run_cut(cut: Cut, score_artifacts: list[Artifact], pool_artifact: Artifact, scratch: Path, executor: Executor,
            progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A :class:`Cut`'s counts (memory-mapped under ``scratch``) and the pool's uids (memory-mapped)."""
    artifact, column = _cut_column(cut.column, score_artifacts)
    uids = np.load(pool_artifact.path / "uids.npy", allow_pickle=False, mmap_mode="r")
    scratch.mkdir(parents=True, exist_ok=True)
    counts = np.lib.format.open_memmap(scratch / "counts.npy", mode="w+", dtype=np.uint32, shape=(len(uids),)) \
        if len(uids) else np.zeros(0, np.uint32)
    values = cut_module.Column(artifact.path, cut_module.parts_of(artifact.manifest), column,
                               executor.for_passes(), progress)
    if values.size != len(uids):
        raise StoreError(f"{artifact.path}: {values.size} score rows for a pool of {len(uids)} "
                         f"({pool_artifact.path.name})")
    if cut.rule == "threshold":
        values.threshold(cut.value, counts)
    elif cut.rule == "datacomp_fraction":
        cut_module.datacomp_fraction(values, cut.value, counts)
    else:
        cut_module.top_k(values, int(cut.value), uids, counts)
    return counts, uids


def _cut_column(name: str | None, score_artifacts: list[Artifact]) -> tuple[Artifact, str]:
    """The score artifact and raw column a cut's column name refers to (resolved as ``ScoreTable.column``)."""
    owners: dict[str, tuple[Artifact, str]] = {}
    for artifact in score_artifacts:
        scorer = artifact.manifest["inputs"]["scorer"]["name"]
        for column in artifact.manifest["columns"]:
            if f"{scorer}.{column}" in owners:
                raise StoreError(f"two score inputs both provide column {scorer}.{column!r}; pass only one of them")
            owners[f"{scorer}.{column}"] = (artifact, column)
    qualified = ScoreTable({n: np.zeros(0, np.float32) for n in owners}).column_name(name)
    return owners[qualified]


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
