"""eval_results.jsonl: atomic appends, torn-tail detection and repair."""

import json
import math

import pytest

from filterbench.harness.evaluation.results import (
    ResultsError,
    append_row,
    make_row,
    read_results,
    repair_results,
)


def _row(key, value=0.5):
    return make_row(key, key.upper(), {"acc1": value, "acc5": float("nan")}, "acc1")


def test_make_row_is_datacomp_format_and_strict_json():
    row = _row("cifar10", 0.25)
    assert row == {
        "key": "cifar10",
        "dataset": "CIFAR10",
        "metrics": {"acc1": 0.25, "acc5": None, "main_metric": 0.25},
    }
    assert make_row("x", "X", {"a": 1.0}, None)["metrics"]["main_metric"] is None
    assert make_row("x", "X", {"a": 1.0}, "missing_metric")["metrics"]["main_metric"] is None


def test_append_and_read_roundtrip(tmp_path):
    path = tmp_path / "r.jsonl"
    assert read_results(path).rows == []
    for key in ("a", "b", "c"):
        append_row(path, _row(key))
    parsed = read_results(path)
    assert [r["key"] for r in parsed.rows] == ["a", "b", "c"] and not parsed.torn_tail
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().count(b"\n") == 3


def test_torn_tail_dropped_then_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, _row("a"))
    append_row(path, _row("b"))
    good = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(json.dumps(_row("c")).encode()[:-7])  # a crash mid-write: no closing brace, no newline
    parsed = read_results(path)
    assert parsed.torn_tail and [r["key"] for r in parsed.rows] == ["a", "b"]
    repair_results(path)
    assert path.read_bytes() == good
    append_row(path, _row("c"))
    assert [r["key"] for r in read_results(path).rows] == ["a", "b", "c"]


def test_valid_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_row("a")) + "\n" + json.dumps(_row("b")))
    parsed = read_results(path)
    assert [r["key"] for r in parsed.rows] == ["a", "b"] and parsed.needs_newline
    repair_results(path)
    append_row(path, _row("c"))
    assert [r["key"] for r in read_results(path).rows] == ["a", "b", "c"]


def test_corruption_in_the_middle_raises_naming_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_row("a")) + "\n{garbage\n" + json.dumps(_row("b")) + "\n")
    with pytest.raises(ResultsError, match=r"r\.jsonl line 2"):
        read_results(path)


def test_nan_never_reaches_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, {"key": "k", "dataset": "K", "metrics": {"x": math.inf, "main_metric": float("nan")}})
    assert json.loads(path.read_text()) == {
        "key": "k",
        "dataset": "K",
        "metrics": {"x": None, "main_metric": None},
    }
