"""Fabricated records for the leaderboard tests (no run needed: the builder reads records only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filterbench.harness.hashing import content_key

DATACOMP_ORDER = ["ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval", "Average"]


def fake_fields(recipe: str = "clip_score_l14_top30", seed: int = 0, scale: str = "small",
                groups: dict[str, float | None] | None = None, official: bool = True,
                **overrides: Any) -> dict:
    """Every record field but the computed ones; keys derive from (recipe, seed, scale, official)."""
    def key(stage: str) -> str:
        return content_key([stage, recipe, seed, scale, official])

    groups = groups or {"ImageNet": 0.05, "ImageNet dist. shifts": 0.055, "VTAB": 0.19, "Retrieval": 0.12,
                        "Average": 0.17}
    fields = {
        "recipe": {"name": recipe, "version": 1, "key": key("recipe")},
        "scale": scale, "official": official, "overrides": {} if official else {"lr": 0.01}, "seed": seed,
        "keys": {"pool": content_key(["pool", scale]), "scores": [key("score")], "selection": key("sample"),
                 "train": key("train"), "eval": key("eval")},
        "plugins": [{"name": "clip_score", "version": 1, "kind": "scorer", "distribution": "filterbench",
                     "distribution_version": "0.1.0"},
                    {"name": "top_fraction", "version": 1, "kind": "sampler", "distribution": "filterbench",
                     "distribution_version": "0.1.0"}],
        "tasklist": {"name": "datacomp_v1", "sha256": "ab" * 32},
        "aggregation_version": 1,
        "metrics": {"imagenet1k": groups.get("ImageNet"), "vtab/cifar100": 0.2},
        "groups": groups, "group_order": list(groups), "missing_tasks": [],
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
