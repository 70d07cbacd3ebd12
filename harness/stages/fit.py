"""The fit stage: a learned scorer's fitted state as its own content-addressed, resumable artifact.

Output: ``fits/<scorer>-<key>/state/`` (whatever :meth:`Scorer.fit` wrote under ``ctx.state_dir``) and a
manifest with the fit's stats and compute.  The key hashes the scorer's :meth:`Scorer.fit_identity`, the pool
key, the keys of the consumed scores and the score seed, so the same fit serves every score artifact that
needs it: re-scoring (a new score schema, another scoring-only param) never re-trains.

Resume: a fit runs inside the store's stable partial folder, and ``ctx.checkpoint_dir`` lives there too, so a
killed fit re-run with the same inputs finds its checkpoints; they are deleted when the fit completes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from filterbench.harness.contract import Scorer, ScoreColumns, StageContext
from filterbench.harness.errors import plugin_call
from filterbench.harness.pool import Pool
from filterbench.harness.provenance import CostMeter
from filterbench.harness.seeding import derive_rng
from filterbench.harness.store import Artifact, Store

FIT_SCHEMA_VERSION = 1
log = logging.getLogger("filterbench.fit")


def fit_inputs(scorer: Scorer, pool_key: str, dep_keys: list[str], seed: int) -> dict:
    return {"stage": "fit", "schema": FIT_SCHEMA_VERSION, "scorer": scorer.fit_identity(), "pool": pool_key,
            "requires": dep_keys, "seed": seed}


def run_fit(store: Store, pool: Pool, scorer: Scorer, pool_key: str, deps: list[Artifact], seed: int,
            plugin: dict | None = None) -> Artifact:
    """Fit ``scorer`` (reusing a completed fit with the same key) and return the fit artifact."""
    store.consume(*deps)
    inputs = fit_inputs(scorer, pool_key, [d.key for d in deps], seed)
    key = store.key_for(inputs)
    done = store.get("fits", scorer.name, key)
    if done is not None:
        return done
    with store.build("fits", scorer.name, key, inputs) as building:
        if building.done is not None:
            return building.done
        state, checkpoints = building.dir / "state", building.dir / "checkpoints"
        state.mkdir(exist_ok=True)
        checkpoints.mkdir(exist_ok=True)
        ctx = StageContext(rng=derive_rng(seed, "fit", scorer.name), seed=seed, state_dir=state,
                           checkpoint_dir=checkpoints, log=log, scores=score_columns(pool, deps))
        with CostMeter() as cost, plugin_call("scorer", scorer.name, "in fit"):
            scorer.fit(pool, ctx)
        shutil.rmtree(checkpoints, ignore_errors=True)
        for path in sorted(p for p in state.rglob("*") if p.is_file()):
            building.add_output(str(path.relative_to(building.dir)))
        return building.finish({"pool_key": pool_key, "requires": [d.key for d in deps], "stats": ctx.stats,
                                "cost": cost.as_dict(),
                                "plugin": {"name": scorer.name, "version": scorer.version, **(plugin or {})}})


def score_columns(pool: Pool, deps: list[Artifact]) -> ScoreColumns | None:
    """The consumed scorers' columns over ``pool``, read shard by shard on demand."""
    if not deps:
        return None
    from filterbench.harness.stages.score import dep_prefixes, read_part_columns

    prefixes = dep_prefixes(deps)

    def reader(stem: str):
        def read() -> dict:
            columns: dict = {}
            for dep, prefix in zip(deps, prefixes):
                columns.update(read_part_columns(dep, stem, prefix))
            return columns
        return read

    names = tuple(f"{prefix}.{c}" for d, prefix in zip(deps, prefixes) for c in d.manifest["columns"])
    return ScoreColumns([reader(s.stem) for s in pool.shards], names)


def copy_state(fit: Artifact, dest: Path) -> list[Path]:
    """Place the fit's state files under ``dest`` (hard links where the file system allows, else copies)."""
    copied = []
    for source in sorted(p for p in (fit.path / "state").rglob("*") if p.is_file()):
        target = dest / source.relative_to(fit.path / "state")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        copied.append(target)
    return copied
