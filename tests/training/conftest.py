"""Fixtures of the training tests: selections of every mode on the shared tiny pool, and a tiny recipe.

The recipe overrides the nano-xs row (so the runs are unofficial): 640 samples in 5 segments of 4 batches of 32
with the 3.4 M-parameter ``filterbench-micro-vit``; every mode then feeds exactly 640 samples.
"""

from __future__ import annotations

import numpy as np
import pytest
from filterbench.harness.contract import Budget, Sampler

TINY = {"samples_seen": 640, "batch_size": 32, "segments": 5, "warmup": 2, "model": "filterbench-micro-vit",
        "workers": 1}
TINY_BUDGET = Budget(samples_seen=640, segments=5, pool_size=0)


class RepeatSampler(Sampler):
    """Multiset: a multinomial draw over the pool, so many uids repeat (test only)."""

    name = "test_repeat"
    mode = "multiset"

    def sample(self, scores, budget, rng):
        return rng.multinomial(budget.samples_seen, np.full(budget.pool_size, 1 / budget.pool_size))


class ScheduleSampler(Sampler):
    """Schedule: segment e draws its share from a different fifth of the pool, with repeats (test only)."""

    name = "test_schedule"
    mode = "schedule"

    def sample(self, scores, budget, rng):
        counts = np.zeros((budget.segments, budget.pool_size), dtype=np.int64)
        parts = np.array_split(np.arange(budget.pool_size), budget.segments)
        for e, size in enumerate(budget.segment_sizes()):
            part = parts[e]
            counts[e, part] = rng.multinomial(size, np.full(part.size, 1 / part.size))
        return counts


@pytest.fixture(scope="session")
def train_store(tmp_path_factory):
    from filterbench.harness.store import Store

    return Store(tmp_path_factory.mktemp("train_store"))


@pytest.fixture(scope="session")
def tiny_scores(tiny_pool, train_store):
    from filterbench import get_scorer
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score

    return run_score(train_store, Pool(tiny_pool), get_scorer("clip_score"), progress=False)


@pytest.fixture(scope="session")
def selections(train_store, tiny_scores):
    """One selection artifact per mode, sampled for the tiny budget (top_fraction keeps 300 of 600 uids)."""
    from filterbench import get_sampler
    from filterbench.harness.stages.sample import run_sample

    return {"subset": run_sample(train_store, get_sampler("top_fraction", fraction=0.5), [tiny_scores],
                                 budget=TINY_BUDGET),
            "multiset": run_sample(train_store, RepeatSampler(), [tiny_scores], budget=TINY_BUDGET),
            "schedule": run_sample(train_store, ScheduleSampler(), [tiny_scores], budget=TINY_BUDGET)}


@pytest.fixture(scope="session")
def tiny() -> dict:
    """Scale overrides of the tiny recipe (a fresh copy per use is not needed: treat it as read-only)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def pool_uids(train_store, selections) -> np.ndarray:
    """The tiny pool's uids in pool order."""
    selection = selections["subset"]
    return np.load(train_store.find(selection.manifest["pool_key"], kind="pools").path / "uids.npy")
