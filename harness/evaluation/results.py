"""``eval_results.jsonl``: DataComp's per-task result lines, appended one task at a time.

Line format (``evaluate.py``)::

    {"key": "vtab/cifar100", "dataset": "CIFAR-100", "metrics": {"acc1": 0.41, ..., "main_metric": 0.41}}

Crash safety: each line is written with one ``write`` on a file opened in append mode and then fsynced, so a
crash can at worst leave the *last* line torn (no trailing newline, not valid JSON).  Readers drop such a
tail; :func:`repair_results` truncates it away before the evaluator appends again.  A malformed line
anywhere else is corruption we did not cause, and raises.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filterbench.harness import faults
from filterbench.harness.errors import FilterbenchError

RESULTS_FILENAME = "eval_results.jsonl"


class ResultsError(FilterbenchError):
    """A results file is corrupted (not just a torn last line)."""


@dataclass
class ResultsFile:
    """The parsed content of a results file.

    Attributes:
        rows: the valid rows, in file order.
        torn_tail: True when the last line was incomplete and was ignored.
        good_bytes: length of the file prefix made of complete lines (where a repair truncates to).
        needs_newline: the last row is valid but lacks its newline (written by another tool).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False
    good_bytes: int = 0
    needs_newline: bool = False

    def keys(self) -> set[str]:
        return {row["key"] for row in self.rows}


def json_safe(value: Any) -> Any:
    """Metrics as strict JSON: NaN/inf become null (DataComp reports acc5 as None below 5 classes)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _parse_row(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        not isinstance(row, dict)
        or not isinstance(row.get("key"), str)
        or not isinstance(row.get("metrics"), dict)
    ):
        return None
    return row


def read_results(path: str | Path) -> ResultsFile:
    """Parse a results file; a missing file reads as empty.  Raises :class:`ResultsError` on corruption."""
    path = Path(path)
    if not path.exists():
        return ResultsFile()
    data = path.read_bytes()
    out = ResultsFile()
    position = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        end = position + len(line) + (0 if is_last else 1)
        if is_last and not line:
            break  # the file ended with a newline
        row = _parse_row(line) if line.strip() else None
        if row is None and is_last:
            out.torn_tail = True  # a crash mid-write; the line is recomputed
            break
        if row is None and line.strip():
            raise ResultsError(
                f"{path} line {number}: not a result line (expected JSON with `key` and `metrics`)"
            )
        if row is not None:
            out.rows.append(row)
            out.needs_newline = is_last
        out.good_bytes = position = end
    return out


def repair_results(path: str | Path) -> ResultsFile:
    """Drop a torn last line (truncate) and complete a missing final newline; returns the parsed file."""
    path = Path(path)
    parsed = read_results(path)
    if parsed.torn_tail:
        with open(path, "r+b") as handle:
            handle.truncate(parsed.good_bytes)
            handle.flush()
            os.fsync(handle.fileno())
    if parsed.needs_newline:
        _append_bytes(path, b"\n")
        parsed.needs_newline = False
    return parsed


def make_row(key: str, dataset: str, metrics: dict[str, Any], main_metric: str | None) -> dict[str, Any]:
    """A result line in DataComp's format; ``main_metric`` is copied from ``metrics`` (None if absent)."""
    metrics = json_safe(dict(metrics))
    metrics["main_metric"] = metrics.get(main_metric) if main_metric else None
    return {"key": key, "dataset": dataset, "metrics": metrics}


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row as a single write (see the module docstring for why that matters)."""
    line = json.dumps(json_safe(row), allow_nan=False) + "\n"
    _append_bytes(Path(path), line.encode("utf-8"))


def _append_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # regular files do not short-write in practice; fail loudly if one does
            raise ResultsError(f"{path}: short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    faults.point(f"appended to {path.name}")
