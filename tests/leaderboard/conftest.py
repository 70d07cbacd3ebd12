"""Fabricated records for the leaderboard tests (no run needed: the builder reads records only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filterbench.harness.hashing import content_key

DATACOMP_ORDER = ["ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval", "Average"]
#: task lists made up for fabricated records (the board recomputes every record's groups from its task
#: metrics and refuses a record whose task list is not in one of declarations.TASKLIST_DIRS)
_FAKE_TASKLISTS: list[Path] = []


def _fake_tasklist_dir() -> Path:
    import tempfile

    if not _FAKE_TASKLISTS:
        _FAKE_TASKLISTS.append(Path(tempfile.mkdtemp(prefix="fb-fake-tasklists-")))
    return _FAKE_TASKLISTS[0]


@pytest.fixture(autouse=True)
def fake_tasklists_are_known(monkeypatch):
    from filterbench.leaderboard import declarations

    monkeypatch.setattr(declarations, "TASKLIST_DIRS", (*declarations.TASKLIST_DIRS, _fake_tasklist_dir()))
    _forget_tasklists()
    yield
    _forget_tasklists()


def _forget_tasklists() -> None:
    from filterbench.leaderboard import declarations

    for cached in (declarations._tasklists_by_sha, declarations._known_tasklist, declarations._tasklist_tasks):
        cached.cache_clear()


def consistent_metrics(groups: dict[str, float | None], missing: list[str], extra: dict[str, float | None],
                       average: str = "Average") -> tuple[dict, dict]:
    """A task list (name, sha256) and task metrics whose DataComp aggregation gives exactly ``groups``.

    Each group other than the average gets one task holding its value (None: a missing task); the tasks in
    ``missing`` and ``extra`` stand outside the groups; one more task makes the average come out right.  The
    task list depends on the group names and task keys only, so the seeds of one recipe share it.
    """
    import hashlib

    import yaml

    metrics: dict[str, float | None] = {}
    tasks: dict[str, dict] = {}
    group_members: dict[str, list[str]] = {}
    for i, (name, value) in enumerate(g for g in groups.items() if g[0] != average):
        key = f"fake/g{i}"
        tasks[key], metrics[key], group_members[name] = {"name": f"Group {i}"}, value, [key]
    for key, value in [*((k, None) for k in missing), *extra.items()]:
        tasks[key], metrics[key] = {"name": key}, value
    target, present = groups.get(average), [v for v in metrics.values() if v is not None]
    tasks["fake/rest"] = {"name": "Rest"}
    if target is None:  # the average needs every task: missing unless another one is
        metrics["fake/rest"] = None if len(present) == len(metrics) else 0.0
    else:
        assert len(present) == len(metrics), f"an average {target} over a missing task is not a valid record"
        metrics["fake/rest"] = (len(present) + 1) * target - sum(present)
    body = yaml.safe_dump({"format": "filterbench-tasklist/1", "name": "fake", "version": 1, "tasks": tasks,
                           "groups": group_members, "average": {"name": average}}, sort_keys=True).encode()
    sha = hashlib.sha256(body).hexdigest()
    path = _fake_tasklist_dir() / f"fake_{sha[:12]}.yaml"
    if not path.exists():
        path.write_bytes(body)
        _forget_tasklists()
    return {"name": path.stem, "sha256": sha}, metrics


def fake_fields(recipe: str = "clip_score_l14_top30", seed: int = 0, scale: str = "small",
                groups: dict[str, float | None] | None = None, official: bool = True,
                **overrides: Any) -> dict:
    """Every record field but the computed ones; keys derive from (recipe, seed, scale, official)."""
    def key(stage: str) -> str:
        return content_key([stage, recipe, seed, scale, official])

    groups = groups or {"ImageNet": 0.05, "ImageNet dist. shifts": 0.055, "VTAB": 0.19, "Retrieval": 0.12,
                        "Average": 0.17}
    tasklist, metrics = _consistent_fields(groups, overrides)
    fields = {
        "recipe": {"name": recipe, "version": 1, "key": key("recipe")},
        "scale": scale, "official": official, "overrides": {} if official else {"lr": 0.01}, "seed": seed,
        "keys": {"pool": content_key(["pool", scale]), "scores": [key("score")], "selection": key("sample"),
                 "train": key("train"), "eval": key("eval")},
        "plugins": [{"name": "clip_score", "version": 1, "kind": "scorer", "distribution": "filterbench",
                     "distribution_version": "0.1.0"},
                    {"name": "top_fraction", "version": 1, "kind": "sampler", "distribution": "filterbench",
                     "distribution_version": "0.1.0"}],
        "tasklist": tasklist,
        "aggregation_version": 1,
        "metrics": metrics,
        "groups": groups, "group_order": list(groups),
        "missing_tasks": sorted(k for k, v in metrics.items() if v is None),
        "selection": {"mode": "subset", "pool_size": 1000, "unique_uids": 300, "total": 300, "max_count": 1},
        "compute": {"score": {"wall_s": 10.0, "cpu_s": 20.0, "gpu_s": 0.0, "peak_rss_mb": 100.0},
                    "sample": {"wall_s": 1.0, "cpu_s": 1.0},
                    "train": {"wall_s": 100.0, "cpu_s": 150.0, "gpu_s": 0.0},
                    "eval": {"wall_s": 30.0}},
        "harness_version": "0.1.0", "git": {"commit": "0" * 40, "dirty": False},
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    fields.update(overrides)
    return fields


def _consistent_fields(groups: dict, overrides: dict) -> tuple[dict, dict]:
    """The task list and metrics of a fabricated record: given ones (a real task list: the groups are then
    recomputed into ``overrides``), or made up to match ``groups``."""
    if "tasklist" not in overrides:
        return consistent_metrics(groups, list(overrides.get("missing_tasks", [])), overrides.pop("metrics", {}),
                                  overrides.get("average_group", "Average"))
    from filterbench.harness.evaluation.aggregate import headline_from_metrics
    from filterbench.leaderboard.declarations import known_tasklist

    tasklist = known_tasklist(overrides["tasklist"]["sha256"])
    computed, missing = headline_from_metrics(tasklist, overrides["metrics"])
    overrides.update(groups=computed, group_order=list(computed), missing_tasks=missing)
    return overrides["tasklist"], overrides["metrics"]


@pytest.fixture()
def fake_record() -> Callable[..., dict]:
    """``fake_record(recipe=..., seed=..., groups=...)`` -> a complete, valid record dict."""
    from filterbench.leaderboard.records import make_record

    return lambda **kw: make_record(**fake_fields(**kw))


@pytest.fixture()
def records_dir(tmp_path) -> Path:
    path = tmp_path / "records"
    path.mkdir()
    return path


@pytest.fixture()
def no_reference(tmp_path) -> Path:
    """A reference.csv path that does not exist: the board then shows no published numbers."""
    return tmp_path / "no-reference.csv"


@pytest.fixture()
def record_fields() -> Callable[..., dict]:
    """``record_fields(recipe=..., seed=...)`` -> the fields of a record, to adjust before ``make_record``."""
    return fake_fields
