"""Reading the records folder the leaderboard is built from (``records/<scale>/<recipe>-seed<seed>-<key12>.json``).

Records are written by the harness (:mod:`filterbench.harness.recording`: :func:`make_record`,
:func:`write_record` and the helpers that turn stage outputs into record fields, re-exported here);
:func:`load_records` is what the leaderboard builder reads.
"""

from __future__ import annotations

import math
from pathlib import Path

from filterbench.harness.recording import (  # noqa: F401  (re-exported: the record API in one import)
    from_eval_summary,
    make_record,
    oracle_counts,
    read_record,
    record_path,
    run_identity,
    selection_stats,
    write_record,
)
from filterbench.leaderboard.schema import Record, RecordError

#: the committed records of this checkout (the package folder is the repository's ``leaderboard/``)
DEFAULT_RECORDS_DIR = Path(__file__).resolve().parent / "records"


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
