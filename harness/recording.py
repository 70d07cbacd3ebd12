"""Run records: a finished run's artifacts turned into its JSON ID card, written, read and identified.

This is the one place records are written (the schema is :mod:`filterbench.harness.record_schema`).  The runner
calls :func:`record_run` after a run's evaluation; the leaderboard only reads the files
(:mod:`filterbench.leaderboard.records`).  Files are ``<records dir>/<scale>/<recipe>-seed<seed>-<evalkey12>.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from filterbench.harness.hashing import canonical_json
from filterbench.harness.record_schema import (
    RECORD_VERSION,
    Record,
    RecordError,
    record_digest,
    validate_record,
    validation_reason,
)
from filterbench.harness.store import Artifact, write_json_atomic

if TYPE_CHECKING:
    from filterbench.harness.runner import RunContext, RunResult

_COST_FIELDS = ("wall_s", "cpu_s", "gpu_s", "peak_rss_mb")
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


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


def build_record(ctx: "RunContext", result: "RunResult") -> dict:
    """The record fields of a finished run (before ``make_record`` adds versions and the digest).

    Scale, ``official`` and overrides come from the run's resolved scale, the object the train stage trained
    with and wrote into its manifest.
    """
    scale = ctx.config.scale
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
        "scale": scale.name, "official": scale.official, "overrides": scale.overrides_dict(), "seed": result.seed,
        "keys": {"pool": selection["pool_key"], "scores": [a.key for a in result.scores],
                 "selection": result.selection.key, "train": result.train.key, "eval": result.eval.key},
        "plugins": [r for r in refs if r is not None],
        "selection": {"mode": selection["mode"], **{k: stats[k] for k in ("pool_size", "unique_uids", "total",
                                                                            "max_count")}},
        "compute": compute,
        **from_eval_summary(result.eval.manifest["summary"]),
    }
    if ctx.config.oracle is not None:
        pool = ctx.store.find(selection["pool_key"], kind="pools")
        uids = np.load(pool.path / "uids.npy", allow_pickle=False)
        counts = np.load(result.selection.path / "counts.npy", allow_pickle=False)
        record["oracle"] = oracle_counts(oracle_noise_types(ctx.config.oracle, uids), counts)
    return record


def record_run(ctx: "RunContext", result: "RunResult") -> Path:
    """Write the run's record under the configuration's records folder and return its path."""
    return write_record(make_record(**build_record(ctx, result)), ctx.config.records_dir)


# -- writing and reading record files ----------------------------------------------------------------------
def make_record(**fields: Any) -> dict[str, Any]:
    """A validated record dict, with ``record_version``, ``created_at`` and ``digest`` filled in.

    Args:
        **fields: the fields of :class:`~filterbench.harness.record_schema.Record` except ``record_version`` and
            ``digest``.  ``created_at`` defaults to now (UTC); ``harness_version`` and ``git`` default to this
            checkout's.  Numpy scalars and tuples are accepted; they are stored as JSON numbers and lists.

    Returns:
        The record as a JSON-able dict, ready for :func:`write_record`.

    Raises:
        RecordError: a field is missing, unknown or invalid (the message lists each one).
    """
    if "digest" in fields:
        raise RecordError("make_record: `digest` is computed, do not pass it")
    if fields.pop("record_version", RECORD_VERSION) != RECORD_VERSION:
        raise RecordError(f"make_record: record_version must be {RECORD_VERSION}")
    fields.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
    if "harness_version" not in fields or "git" not in fields:
        import filterbench
        from filterbench.harness.provenance import git_commit

        fields.setdefault("harness_version", filterbench.__version__)
        fields.setdefault("git", git_commit())
    # round-trip through canonical JSON so the digest covers exactly what the file will hold
    full = {"record_version": RECORD_VERSION, **fields, "digest": _PLACEHOLDER_DIGEST}
    data = json.loads(canonical_json(full))
    try:
        model = Record.model_validate(data)
    except ValidationError as exc:
        raise RecordError(f"make_record: invalid record: {validation_reason(exc)}") from None
    record = model.model_dump(mode="json")  # defaults filled in, so every record file has every field
    record["digest"] = record_digest(record)
    return record


def _safe_name(text: str) -> str:
    """A file-name-safe form of a recipe name (the name itself stays verbatim inside the record)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "recipe"


def record_path(record: dict[str, Any], records_dir: str | Path) -> Path:
    """Where :func:`write_record` stores a record: ``<dir>/<scale>/<recipe>-seed<seed>-<evalkey12>.json``."""
    base = Path(records_dir)
    name = f"{_safe_name(record['recipe']['name'])}-seed{record['seed']}-{record['keys']['eval'][:12]}.json"
    return base / record["scale"] / name


def write_record(record: dict[str, Any], records_dir: str | Path) -> Path:
    """Validate ``record`` and write it atomically; return its path.

    A rerun supersedes the earlier record of the same run (same :func:`run_identity`, e.g. the same recipe and
    seed retrained after a harness change): that file is removed, so the board never counts a seed twice and
    the pull request shows the replacement.  Files that do not validate are left alone for a person to look at.
    """
    model = validate_record(record, "record to write")
    path = record_path(record, records_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    for older in sorted(path.parent.glob("*.json")):
        if older != path and _same_run(older, model):
            older.unlink()
    write_json_atomic(path, record)
    return path


def _same_run(path: Path, record: Record) -> bool:
    try:
        return run_identity(read_record(path)) == run_identity(record)
    except RecordError:
        return False


def read_record(path: str | Path) -> Record:
    """Load and validate one record file; :class:`RecordError` names the file and the reason."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: unreadable record ({exc})") from None
    return validate_record(data, str(path))


def run_identity(record: Record) -> tuple:
    """What makes two records the same run: counting it twice would fake a seed."""
    return (record.scale, record.official, record.recipe.name, record.recipe.version, record.seed,
            record.tasklist.sha256, record.aggregation_version)


# -- turning stage outputs into record fields ----------------------------------------------------------------

def from_eval_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Record fields from an evaluation summary (``harness.evaluation.aggregate.summarize``'s dict).

    Returns ``tasklist``, ``aggregation_version``, ``metrics``, ``task_metrics`` (absent), ``groups``,
    ``group_order``, ``average_group`` and ``missing_tasks``.  The summary lists the average after the groups,
    so the last score is the average unless one is literally named "Average".
    """
    scores = dict(summary["scores"])
    order = list(scores)
    average = "Average" if "Average" in scores else order[-1]
    return {
        "tasklist": {"name": summary["tasklist"]["name"], "sha256": summary["tasklist"]["sha256"]},
        "aggregation_version": summary["aggregation_version"],
        "metrics": {key: task["main_metric"] for key, task in summary["tasks"].items()},
        "groups": scores,
        "group_order": order,
        "average_group": average,
        "missing_tasks": list(summary["missing_tasks"]),
    }


def selection_stats(counts: np.ndarray, mode: str) -> dict[str, Any]:
    """``selection`` fields from a count vector (N) or a schedule's count matrix (E x N)."""
    counts = np.asarray(counts)
    per_uid = counts.sum(axis=0) if counts.ndim == 2 else counts
    return {"mode": mode, "pool_size": int(per_uid.shape[0]), "unique_uids": int(np.count_nonzero(per_uid)),
            "total": int(per_uid.sum()), "max_count": int(per_uid.max()) if per_uid.size else 0}


def oracle_counts(noise_types: Sequence[str] | np.ndarray, counts: np.ndarray) -> dict[str, dict[str, int]]:
    """``oracle`` field: per noise type, the pool's uids and those kept (count > 0).

    Args:
        noise_types: the oracle's ``noise_type`` per uid, aligned with the pool order of ``counts``.
        counts: per-uid counts (N) or a schedule (E x N).
    """
    types = np.asarray(noise_types, dtype=object)
    counts = np.asarray(counts)
    kept = (counts.sum(axis=0) if counts.ndim == 2 else counts) > 0
    if types.shape != kept.shape:
        raise RecordError(f"oracle has {types.shape[0]} uids but the selection has {kept.shape[0]}")
    return {str(t): {"total": int(np.sum(types == t)), "kept": int(np.sum(kept & (types == t)))}
            for t in sorted(set(types.tolist()))}
