"""Headline scores from a results file, as DataComp's ``aggregate_scores.py`` computes them.

DataComp: rows with a null ``main_metric`` are dropped; each group is the unweighted mean of its members'
main metrics; ``Average`` is the unweighted mean over all scored tasks (38 for DataComp); the script asserts
exactly 38 rows.  We keep the formulas and replace the assertion by reporting: a group (or the average) that
needs a missing task is ``None`` and the task is named in ``missing_tasks``.  A ``partial`` section gives the
means over the tasks that are present, clearly separated, for progress display only.

Bump :data:`AGGREGATION_VERSION` on any change that can alter a number in the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filterbench.harness.evaluation.results import ResultsFile, read_results
from filterbench.harness.evaluation.tasklist import TaskList, load_tasklist

AGGREGATION_VERSION = 1


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _index_rows(
    rows: list[dict[str, Any]], tasklist: TaskList
) -> tuple[dict[str, dict], list[str], list[str]]:
    """Rows by task key (first occurrence wins, as DataComp's resume reuses the first line).

    Rows without a known key are matched by display name, since DataComp's aggregator keys on ``dataset``.
    Returns (rows by key, duplicate keys, unknown row labels).
    """
    by_name = {t.name: t.key for t in tasklist.tasks + tasklist.extras}
    known = {t.key for t in tasklist.tasks + tasklist.extras}
    indexed: dict[str, dict] = {}
    duplicates: list[str] = []
    unknown: list[str] = []
    for row in rows:
        key = row.get("key")
        if key not in known:
            key = by_name.get(row.get("dataset"))
        if key is None:
            unknown.append(str(row.get("key") or row.get("dataset")))
        elif key in indexed:
            duplicates.append(key)
        else:
            indexed[key] = row
    return indexed, sorted(set(duplicates)), unknown


def _main_metric(row: dict | None) -> float | None:
    if row is None:
        return None
    value = row.get("metrics", {}).get("main_metric")
    return None if value is None else float(value)


def aggregate_rows(rows: list[dict[str, Any]], tasklist: TaskList | str) -> dict[str, Any]:
    """The summary dict (JSON-able) for already-parsed result rows; see :func:`summarize`."""
    tasklist = load_tasklist(tasklist)
    indexed, duplicates, unknown = _index_rows(rows, tasklist)
    scores = {t.key: _main_metric(indexed.get(t.key)) for t in tasklist.scored_tasks}
    missing = [key for key, value in scores.items() if value is None]
    null_rows = [key for key in missing if key in indexed]
    summary: dict[str, Any] = {
        "aggregation_version": AGGREGATION_VERSION,
        "tasklist": {"name": tasklist.name, "version": tasklist.version, "sha256": tasklist.sha256},
        "complete": not missing,
        "scores": _headline(tasklist, scores, partial=False),
        "n_scored_tasks": len(scores),
        "n_present": len(scores) - len(missing),
        "missing_tasks": missing,
        "null_main_metric_tasks": null_rows,
        "partial": _headline(tasklist, scores, partial=True) if missing else None,
        "tasks": {t.key: {"dataset": t.name, "main_metric": scores[t.key]} for t in tasklist.scored_tasks},
        "unscored_tasks": {
            t.key: {"dataset": t.name, "present": t.key in indexed} for t in tasklist.tasks if not t.scored
        },
        "extras": {
            t.key: {
                "dataset": t.name,
                "main_metric": _main_metric(indexed.get(t.key)),
                "present": t.key in indexed,
            }
            for t in tasklist.extras
        },
        "duplicate_tasks": duplicates,
        "unknown_rows": unknown,
    }
    return summary


def headline_from_metrics(tasklist: TaskList, metrics: dict[str, float | None]) -> tuple[dict, list[str]]:
    """``(groups with the average, missing task keys)`` from per-task main metrics, as :func:`aggregate_rows`
    computes them; what a record's ``groups`` and ``missing_tasks`` must be given its ``metrics``."""
    scores = {t.key: metrics.get(t.key) for t in tasklist.scored_tasks}
    return _headline(tasklist, scores, partial=False), [key for key, value in scores.items() if value is None]


def _headline(tasklist: TaskList, scores: dict[str, float | None], partial: bool) -> dict[str, float | None]:
    """Group means and the average; with ``partial`` the means skip missing tasks (None if all missing)."""
    out: dict[str, float | None] = {}
    members = dict(tasklist.groups)
    members[tasklist.average_name] = tuple(scores)
    for group, keys in members.items():
        values = [scores[k] for k in keys]
        present = [v for v in values if v is not None]
        if partial:
            out[group] = _mean(present) if present else None
        else:
            out[group] = _mean(present) if len(present) == len(values) else None
    return out


def summarize(results_jsonl_path: str | Path, tasklist: TaskList | str = "datacomp_v1") -> dict[str, Any]:
    """Summarize ``eval_results.jsonl`` against a task list.

    Args:
        results_jsonl_path: a results file in DataComp's line format (a torn last line is ignored).
        tasklist: a :class:`TaskList` or a name/path for :func:`load_tasklist`.

    Returns:
        A JSON-able dict: ``scores`` (each group and the average, None when a needed task is missing),
        ``missing_tasks``, ``partial`` (means over present tasks, only when something is missing), per-task
        main metrics, ``extras`` (reported beside the average), ``aggregation_version`` and the task list's
        name/version/sha256.
    """
    parsed: ResultsFile = read_results(results_jsonl_path)
    summary = aggregate_rows(parsed.rows, tasklist)
    summary["torn_last_line"] = parsed.torn_tail
    return summary
