"""Turn a finished run (its artifacts) into a leaderboard record (the run's ID card)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from filterbench.harness.store import Artifact

if TYPE_CHECKING:
    from filterbench.harness.manager import Plugins
    from filterbench.harness.runner import RunContext, RunResult

_COST_FIELDS = ("wall_s", "cpu_s", "gpu_s", "peak_rss_mb")


def _cost(artifact: Artifact) -> dict:
    cost = artifact.manifest.get("cost", {})
    cost = cost.get("total", cost)  # the train stage reports per phase plus a total
    return {k: cost[k] for k in _COST_FIELDS if k in cost and cost[k] is not None} or {"wall_s": 0.0}


def _fit_cost(fit: dict) -> dict:
    cost = fit.get("cost", {})
    return {k: cost[k] for k in _COST_FIELDS if k in cost and cost[k] is not None} or {"wall_s": 0.0}


def _plugin_ref(artifact: Artifact, kind: str) -> dict | None:
    plugin = artifact.manifest.get("plugin") or {}
    if not plugin.get("name") or plugin.get("plugin") is None:
        return None  # the harness's internal uid carrier, not a registered plugin
    return {"name": plugin["name"], "version": plugin["version"], "kind": kind,
            "distribution": plugin.get("distribution"), "distribution_version": plugin.get("distribution_version")}


def with_dependencies(store, scores: list[Artifact]) -> list[Artifact]:
    """The recipe's score artifacts, then every score artifact they consumed (``requires``), each once.

    A scorer that reads another's output (``basic_filter`` reads ``language_id``) only meters its own work; the
    run's scoring compute must include what it consumed.
    """
    ordered: dict[str, Artifact] = {}
    pending = list(scores)
    while pending:
        artifact = pending.pop(0)
        if artifact.key not in ordered:
            ordered[artifact.key] = artifact
            pending += [store.find(key, kind="scores") for key in artifact.manifest.get("requires", [])]
    return list(ordered.values())


def oracle_noise_types(oracle_dir: Path, pool_uids: np.ndarray) -> np.ndarray:
    """The oracle's noise type per pool uid, in pool order (fails if any uid has no ground truth)."""
    import pyarrow.parquet as pq

    from filterbench.harness.errors import FilterbenchError
    from filterbench.harness.uids import pairs_to_hex

    table = {}
    for path in sorted(Path(oracle_dir).glob("*.parquet")):
        part = pq.read_table(path, columns=["uid", "noise_type"]).to_pydict()
        table.update(zip(part["uid"], part["noise_type"]))
    hexes = pairs_to_hex(pool_uids)
    missing = [u for u in hexes[:1000] if u not in table]
    if missing:
        raise FilterbenchError(f"{oracle_dir}: no ground truth for uid {missing[0]}")
    return np.array([table[u] for u in hexes], dtype=object)


def build_record(ctx: "RunContext", result: "RunResult", plugins: "Plugins") -> dict:
    """The record fields of a finished run (before ``make_record`` adds versions and the digest)."""
    from filterbench.leaderboard.records import from_eval_summary, oracle_counts

    selection = result.selection.manifest
    scored = with_dependencies(ctx.store, result.scores)
    compute = {}
    for artifact in scored:
        name = f"score:{artifact.manifest['plugin']['name']}"
        compute[name if name not in compute else f"{name}@{artifact.key[:12]}"] = _cost(artifact)
        fit = artifact.manifest.get("fit")
        if fit is not None:  # a learned scorer's training, metered by its own (fit) stage
            compute[f"{name}:fit@{fit['key'][:12]}"] = _fit_cost(fit)
    compute.update({"sample": _cost(result.selection), "train": _cost(result.train), "eval": _cost(result.eval)})
    refs = [_plugin_ref(a, "scorer") for a in scored] + [_plugin_ref(result.selection, "sampler")]
    stats = selection["stats"]
    record = {
        "recipe": {"name": result.recipe.name, "version": result.recipe.version, "key": result.recipe.key()},
        "scale": ctx.scale.name, "official": ctx.official, "overrides": dict(ctx.overrides), "seed": result.seed,
        "keys": {"pool": selection["pool_key"], "scores": [a.key for a in result.scores],
                 "selection": result.selection.key, "train": result.train.key, "eval": result.eval.key},
        "plugins": [r for r in refs if r is not None],
        "selection": {"mode": selection["mode"], **{k: stats[k] for k in ("pool_size", "unique_uids", "total",
                                                                            "max_count")}},
        "compute": compute,
        **from_eval_summary(result.eval.manifest["summary"]),
    }
    if ctx.oracle_dir is not None:
        pool = ctx.store.find(selection["pool_key"], kind="pools")
        uids = np.load(pool.path / "uids.npy", allow_pickle=False)
        counts = np.load(result.selection.path / "counts.npy", allow_pickle=False)
        record["oracle"] = oracle_counts(oracle_noise_types(ctx.oracle_dir, uids), counts)
    return record


def record_run(ctx: "RunContext", result: "RunResult", plugins: "Plugins") -> Path:
    """Write the run's record under ``ctx.records_dir`` and return its path."""
    from filterbench.leaderboard.records import make_record, write_record

    return write_record(make_record(**build_record(ctx, result, plugins)), ctx.records_dir)
