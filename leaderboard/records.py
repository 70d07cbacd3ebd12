"""Writing and reading run records (``leaderboard/records/<scale>/<recipe>-seed<seed>-<evalkey12>.json``).

The runner calls :func:`make_record` after a run's evaluation finished and :func:`write_record` to store it;
:func:`load_records` is what the leaderboard builder reads.  The helpers :func:`from_eval_summary`,
:func:`selection_stats` and :func:`oracle_counts` turn stage outputs into record fields.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from filterbench.harness.hashing import canonical_json
from filterbench.harness.store import write_json_atomic
from filterbench.leaderboard.schema import (
    RECORD_VERSION,
    Record,
    RecordError,
    record_digest,
    validate_record,
    validation_reason,
)
from pydantic import ValidationError

#: the committed records of this checkout (the package folder is the repository's ``leaderboard/``)
DEFAULT_RECORDS_DIR = Path(__file__).resolve().parent / "records"
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def make_record(**fields: Any) -> dict[str, Any]:
    """A validated record dict, with ``record_version``, ``created_at`` and ``digest`` filled in.

    Args:
        **fields: the fields of :class:`~filterbench.leaderboard.schema.Record` except ``record_version`` and
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


def record_path(record: dict[str, Any], records_dir: str | Path | None = None) -> Path:
    """Where :func:`write_record` stores a record: ``<dir>/<scale>/<recipe>-seed<seed>-<evalkey12>.json``."""
    base = Path(records_dir) if records_dir is not None else DEFAULT_RECORDS_DIR
    name = f"{_safe_name(record['recipe']['name'])}-seed{record['seed']}-{record['keys']['eval'][:12]}.json"
    return base / record["scale"] / name


def write_record(record: dict[str, Any], records_dir: str | Path | None = None) -> Path:
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


def load_records(records_dir: str | Path | None = None, scale: str | None = None) -> list[Record]:
    """Every record under ``records_dir`` (default: the repository's), validated, in a content-defined order.

    All files are validated even when ``scale`` filters the result, so a bad record anywhere fails the build.
    The order depends on the records only (:func:`record_order`), never on file names or listing order.

    Raises:
        RecordError: a file is unreadable, invalid, tampered with, stored under another scale's folder, or two
            records describe the same run (same recipe, version, scale, seed and evaluation).
    """
    base = Path(records_dir) if records_dir is not None else DEFAULT_RECORDS_DIR
    if not base.is_dir():
        raise RecordError(f"{base}: records folder does not exist")
    records = []
    for path in sorted(base.rglob("*.json")):
        if path.name.startswith("."):
            continue  # an interrupted atomic write's temporary file
        record = read_record(path)
        check_groups(record)
        if path.parent != base and path.parent.name != record.scale:
            raise RecordError(f"{path}: stored under {path.parent.name}/ but its scale is {record.scale!r}")
        records.append(record)
    _reject_duplicates(records)
    records.sort(key=record_order)
    return [r for r in records if scale is None or r.scale == scale]


def check_groups(record: Record) -> None:
    """Recompute a record's ``groups`` and ``missing_tasks`` from its per-task ``metrics`` and refuse it when they
    differ: the digest only proves the file is what its writer wrote, and a writer can compute a digest over a
    forged Average.  A record whose task list (by SHA-256) is not in this checkout cannot be checked, so it is
    refused too, naming the task list.

    Raises:
        RecordError: naming the file and the first group (or the missing tasks) that do not match.
    """
    from filterbench.harness.evaluation.aggregate import AGGREGATION_VERSION, headline_from_metrics
    from filterbench.leaderboard.declarations import known_tasklist, tasklist_dirs

    if record.aggregation_version != AGGREGATION_VERSION:
        raise RecordError(f"{record.source}: aggregation_version {record.aggregation_version} is not this harness's "
                          f"({AGGREGATION_VERSION}); its groups cannot be recomputed")
    tasklist = known_tasklist(record.tasklist.sha256)
    if tasklist is None:
        folders = ", ".join(str(d) for d in tasklist_dirs())
        raise RecordError(f"{record.source}: task list {record.tasklist.name!r} (sha256 "
                          f"{record.tasklist.sha256[:12]}...) is in none of {folders}; its groups cannot be checked "
                          "(add its folder with --tasklists)")
    groups, missing = headline_from_metrics(tasklist, record.metrics)
    if record.average_group != tasklist.average_name or set(groups) != set(record.groups):
        raise RecordError(f"{record.source}: groups {sorted(record.groups)} (average {record.average_group!r}) are not "
                          f"task list {tasklist.name}'s {sorted(groups)} (average {tasklist.average_name!r})")
    for name in record.group_order:
        stored, computed = record.groups[name], groups[name]
        if (stored is None) != (computed is None) or (stored is not None and not math.isclose(
                stored, computed, rel_tol=1e-9, abs_tol=1e-12)):
            raise RecordError(f"{record.source}: group {name!r} is {stored!r} but the record's task metrics give "
                              f"{computed!r} (a forged or stale group score)")
    if sorted(missing) != sorted(record.missing_tasks):
        raise RecordError(f"{record.source}: missing_tasks {sorted(record.missing_tasks)} but the task metrics miss "
                          f"{sorted(missing)}")


def record_order(record: Record) -> tuple:
    """A content-defined order of records: scale, recipe, version, seed, eval key."""
    return (record.scale, record.recipe.name, record.recipe.version, record.seed, record.keys.eval)


def run_identity(record: Record) -> tuple:
    """What makes two records the same run: counting it twice would fake a seed."""
    return (record.scale, record.official, record.recipe.name, record.recipe.version, record.seed,
            record.tasklist.sha256, record.aggregation_version)


def _reject_duplicates(records: list[Record]) -> None:
    seen: dict[tuple, Record] = {}
    evals: dict[str, Record] = {}
    for record in records:
        for index, key in ((seen, run_identity(record)), (evals, record.keys.eval)):
            other = index.get(key)
            if other is not None:
                raise RecordError(f"{record.source}: same run as {other.source} "
                                  f"(recipe {record.recipe.name!r}, "
                                  f"seed {record.seed}, eval {record.keys.eval}); keep one of them")
            index[key] = record


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
