"""The score stage: run a scorer over a pool, shard by shard, into a content-addressed artifact.

Output: ``scores/<scorer>-<key>/parts/<shard>.parquet`` with ``uid`` (32-hex, as in DataComp's metadata) and one
float32 column per declared output, one part per metadata shard, rows in pool order.  The key hashes the
scorer's identity (name, version, params), the pool key, the keys of consumed scores, the score seed (which
also fixes the batches of batch-dependent scorers) and the score schema version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filterbench.harness.atomic import publish, temporary_path
from filterbench.harness.contract import PoolBatch, Resources, Scorer, StageContext, input_prefixes
from filterbench.harness.cut import Column, Part
from filterbench.harness.errors import PluginError, plugin_call
from filterbench.harness.executor import Executor, LocalExecutor, Task
from filterbench.harness.manager import Plugins, get_plugins
from filterbench.harness.pool import Pool, ShardInfo
from filterbench.harness.provenance import CostMeter
from filterbench.harness.seeding import derive_rng
from filterbench.harness.stages.fit import copy_state, run_fit
from filterbench.harness.stages.pool import register_pool
from filterbench.harness.store import Artifact, Building, Store, mark_unit, unit_record

SCORE_SCHEMA_VERSION = 1
log = logging.getLogger("filterbench.score")


@dataclass
class ScoreTask(Task):
    """Score one metadata shard (a unit: its :class:`ShardInfo`) into ``parts/<stem>.parquet`` of a partial
    score folder.

    Picklable (the scorer travels as its params, the pool as its folder), so any executor can run it; a unit
    whose marker is already there (a requeued Slurm element, a retried Ray task) returns its record.
    """

    scorer: Scorer
    pool: Pool
    folder: Path
    seed: int
    deps: list[Artifact]

    @property
    def resources(self) -> Resources:
        return self.scorer.resources

    def setup(self) -> None:
        if self.scorer.needs.images:
            self.pool.samples()  # index the tars once per worker (forked workers inherit the driver's index)

    def run(self, shard: ShardInfo) -> dict:
        return unit_record(self.folder, shard.stem) or _score_shard(self, shard)


def score_inputs(scorer: Scorer, pool_key: str, dep_keys: list[str], seed: int) -> dict:
    return {"stage": "score", "schema": SCORE_SCHEMA_VERSION, "scorer": scorer.identity(), "pool": pool_key,
            "requires": dep_keys, "seed": seed, "batch_dependent": scorer.batch_dependent,
            "needs": {"metadata": list(scorer.needs.metadata), "features": list(scorer.needs.features),
                      "images": scorer.needs.images}}


def run_score(store: Store, pool: Pool, scorer: Scorer, seed: int = 0, workers: int = 1,
              plugins: Plugins | None = None, progress: bool = True, executor: Executor | None = None) -> Artifact:
    """Score ``pool`` with ``scorer`` (and, first, the scorers it consumes); reuse a completed artifact.

    Shards run on ``executor`` (default: a local pool of ``workers`` processes); the artifact's bytes do not
    depend on which.
    """
    plugins = plugins or get_plugins()
    executor = executor or LocalExecutor(workers)
    pool_artifact = register_pool(store, pool)
    deps = [run_score(store, pool, plugins.scorer_class(d.scorer)(**dict(d.params)), seed, workers, plugins,
                      progress, executor) for d in scorer.required_scores()]
    inputs = score_inputs(scorer, pool_artifact.key, [d.key for d in deps], seed)
    key = store.key_for(inputs)
    done = store.get("scores", scorer.name, key)
    if done is not None:
        return done
    plugin = plugins.distribution_of(plugins.scorers.owner(scorer.name)) if scorer.name in plugins.scorers \
        else {"plugin": None}
    # the fit is its own artifact (and its own compute), built before the score stage's meter starts
    fit = run_fit(store, pool, scorer, pool_artifact.key, deps, seed, plugin) if scorer.has_fit else None
    with store.build("scores", scorer.name, key, inputs) as building:
        if building.done is not None:  # another command finished it while this one waited
            return building.done
        task = ScoreTask(scorer, pool, building.dir, seed, deps)
        if fit is not None:
            copy_state(fit, building.dir / "fit")
        with CostMeter() as cost:
            todo = [s for s in pool.shards if building.unit_done(s.stem) is None]
            if scorer.needs.images and todo and isinstance(executor, LocalExecutor):
                pool.samples()  # index the tars once, before the workers fork
            # local workers are joined before the meter stops, so their CPU time is in RUSAGE_CHILDREN; remote
            # workers' CPU time is in the units' records (unit_cpu_s)
            executor.map(task, todo, f"score {scorer.name}", progress)
        return _finish(task, building, pool_artifact.key, fit, cost, plugin, executor)


def _score_shard(job: ScoreTask, shard: ShardInfo) -> dict:
    import resource

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    scorer = job.scorer
    ctx = StageContext(rng=derive_rng(job.seed, "score", scorer.name, shard.stem), seed=job.seed,
                       state_dir=job.folder / "fit", log=log, shard_index=shard.offset)
    with plugin_call("scorer", scorer.name, f"in setup on shard {shard.stem}"):
        scorer.setup(ctx)
    batch = job.pool.batches(scorer.needs, shard)
    for dep, prefix in zip(job.deps, dep_prefixes(job.deps)):
        batch.scores.update(read_part_columns(dep, shard.stem, prefix))
    columns = _score_in_batches(scorer, batch, ctx)
    part = f"parts/{shard.stem}.parquet"
    _write_part(job.folder / part, batch.uids, columns)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return mark_unit(job.folder, shard.stem, [part], rows=len(batch), stats=ctx.stats, cpu_s=cpu)


def _score_in_batches(scorer: Scorer, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
    """Batch-dependent scorers see the whole shard at once; others see slices of ``batch_rows`` rows."""
    n = len(batch)
    step = n if scorer.batch_dependent else max(1, scorer.batch_rows)
    outputs = scorer.output_columns()
    pieces: dict[str, list[np.ndarray]] = {c: [] for c in outputs}
    for start in range(0, max(n, 1), step):
        piece = _slice(batch, start, min(n, start + step))
        with plugin_call("scorer", scorer.name, f"on shard {batch.shard}"):
            result = scorer.score_batch(piece, ctx)
        for column, values in _check_output(scorer, result, piece).items():
            pieces[column].append(values)
    return {c: np.concatenate(v) if v else np.zeros(0, np.float32) for c, v in pieces.items()}


def _slice(batch: PoolBatch, start: int, stop: int) -> PoolBatch:
    if start == 0 and stop == len(batch):
        return batch
    cut = slice(start, stop)
    return PoolBatch(batch.shard, batch.uids[cut], {k: v[cut] for k, v in batch.metadata.items()},
                     {k: v[cut] for k, v in batch.features.items()},
                     None if batch.images is None else batch.images[cut], {k: v[cut] for k, v in batch.scores.items()})


def _check_output(scorer: Scorer, result: Any, batch: PoolBatch) -> dict[str, np.ndarray]:
    """Length, columns, dtype and finiteness of one batch's output, with the plugin and shard named."""
    expected = scorer.output_columns()
    if not isinstance(result, dict):
        if len(expected) != 1:
            raise PluginError(f"scorer {scorer.name!r} returned one array on shard {batch.shard}; "
                              f"it declares columns {list(expected)}")
        result = {expected[0]: result}
    if set(result) != set(expected):
        raise PluginError(f"scorer {scorer.name!r} returned columns {sorted(result)} on shard {batch.shard}; "
                          f"declared {list(expected)}")
    checked = {}
    for column in expected:
        values = np.asarray(result[column])
        if values.shape != (len(batch),):
            raise PluginError(f"scorer {scorer.name!r} column {column!r} has shape {values.shape} on shard "
                              f"{batch.shard}; expected ({len(batch)},)")
        values = values.astype(np.float32)
        bad = ~np.isfinite(values)
        if scorer.needs.images and batch.images is not None:
            bad &= has_image(batch.images)  # no image (a failed download) -> NaN allowed
        for consumed in batch.scores.values():
            bad &= np.isfinite(consumed)  # NaN in a consumed column (no image) may propagate
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PluginError(f"scorer {scorer.name!r} column {column!r} is not finite ({values[row]}) for uid "
                              f"{batch.uids[row]} on shard {batch.shard}")
        checked[column] = values
    return checked


def has_image(images) -> np.ndarray:
    """Which rows of ``PoolBatch.images`` have an image, without decoding any (lazy images know it)."""
    available = getattr(images, "available", None)
    if available is not None:
        return np.asarray(available, dtype=bool)
    return np.array([img is not None for img in images], dtype=bool)


def _write_part(path, uids: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    strings = uids if uids.dtype == object else uids.astype(str)  # (the pool's are Python strings already)
    table = pa.table({"uid": pa.array(strings, pa.string()),
                      **{c: pa.array(v, pa.float32()) for c, v in columns.items()}})
    pq.write_table(table, tmp, compression="zstd")
    publish(tmp, path)


def read_part_columns(artifact: Artifact, stem: str, prefix: str | None = None) -> dict[str, np.ndarray]:
    """One shard's score columns from a score artifact, qualified as ``<prefix>.<column>`` (default prefix:
    the scorer's name)."""
    manifest = artifact.manifest
    table = pq.read_table(artifact.path / f"parts/{stem}.parquet")
    prefix = prefix or manifest["inputs"]["scorer"]["name"]
    return {f"{prefix}.{c}": table.column(c).to_numpy() for c in manifest["columns"]}


def dep_prefixes(deps: list[Artifact]) -> list[str]:
    """Column prefixes of consumed score artifacts, in order (:func:`contract.input_prefixes`)."""
    return input_prefixes([d.manifest["inputs"]["scorer"]["name"] for d in deps])


def unit_totals(building: Building, pool: Pool) -> dict[str, float]:
    """The numbers scorers recorded per shard (``ctx.stat``), summed over shards, with each shard's CPU
    seconds as ``unit_cpu_s`` (pixel scorers: images, missing images, decode and model seconds)."""
    totals: dict[str, float] = {}
    for shard in pool.shards:
        record = building.unit_done(shard.stem) or {}
        for name, value in {**record.get("stats", {}), "unit_cpu_s": record.get("cpu_s", 0.0)}.items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return {k: round(v, 3) for k, v in totals.items()}


def _throughput(totals: dict[str, float], cost: CostMeter) -> dict:
    """Images per second of the stage's wall time, when the scorer embedded images itself."""
    if not totals.get("images"):
        return {}
    return {"throughput": {"images": int(totals["images"]),
                           "missing_images": int(totals.get("missing_images", 0)),
                           "images_per_s": round(totals["images"] / max(cost.wall_s, 1e-9), 1)}}


def _finish(job: ScoreTask, building: Building, pool_key: str, fit: Artifact | None, cost: CostMeter,
            plugin: dict, executor: Executor) -> Artifact:
    pool = job.pool
    totals = unit_totals(building, pool)
    cost.used_gpu = cost.used_gpu or totals.get("gpu_s", 0.0) > 0
    columns = job.scorer.output_columns()
    for shard in pool.shards:
        building.add_output(f"parts/{shard.stem}.parquet", rows=shard.rows)
    fit_dir = building.dir / "fit"
    if fit_dir.is_dir():
        for path in sorted(p for p in fit_dir.rglob("*") if p.is_file()):
            building.add_output(str(path.relative_to(building.dir)))
    # column statistics part by part on the executor: the driver never holds a score column
    parts = [Part(s.stem, s.offset, s.rows) for s in pool.shards]
    stats = {c: Column(building.dir, parts, c, executor.for_passes()).stats() for c in columns}
    fit_ref = {"fit": {"key": fit.key, "cost": fit.manifest.get("cost", {})}} if fit is not None else {}
    return building.finish({"pool_key": pool_key, "columns": list(columns), "rows": pool.size,
                            "parts": [s.stem for s in pool.shards], "stats": stats,
                            "fit_stats": fit.manifest.get("stats", {}) if fit is not None else {}, **fit_ref,
                            "cost": cost.as_dict(), "unit_stats": totals, **_throughput(totals, cost),
                            "requires": [d.key for d in job.deps], "executed_by": executor.describe(),
                            "plugin": {"name": job.scorer.name, "version": job.scorer.version, **plugin}})
