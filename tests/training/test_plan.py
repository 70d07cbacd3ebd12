"""The feed plan: step counts like DataComp, exact per-uid feed counts, repeats kept out of one batch."""

from __future__ import annotations

import numpy as np
import pytest
from filterbench.harness.scales import SCALES
from filterbench.harness.training.plan import (
    TrainError,
    build_plan,
    copy_numbers,
    deal,
    feed_budget,
    fill_to,
    repeats_in_batches,
)


def budget_of(name: str):
    s = SCALES[name]
    return feed_budget(s.samples_seen, s.segments, s.batch_size, s.workers)


def test_step_counts_match_datacomp_rounding():
    # datacomp.md 4.3: with 5 checkpoints and 4 workers, small trains 3,140 steps (12,861,440 samples)
    small = budget_of("small")
    assert (small.batches_per_segment, small.steps, small.samples_fed) == (628, 3140, 12_861_440)
    assert budget_of("medium").steps == 31_260
    assert budget_of("large").steps == 156_260
    assert budget_of("xlarge").steps == 142_060
    # one worker, no rounding: 12.8M / 4096 = 3,125 steps
    assert feed_budget(12_800_000, 5, 4096, 1).steps == 3125


@pytest.mark.parametrize("name", ["nano-xs", "nano"])
def test_nano_scales_feed_exactly_their_budget(name):
    assert budget_of(name).samples_fed == SCALES[name].samples_seen


def test_multiset_is_fed_exactly_and_repeats_never_share_a_batch():
    rng = np.random.default_rng(0)
    budget = feed_budget(640, 5, 32, 1)
    counts = rng.multinomial(640, np.full(200, 1 / 200))
    assert counts.max() > 1
    plan = build_plan("multiset", counts, np.ones(200, bool), budget, np.random.default_rng(1))
    assert [s.size for s in plan.segments] == [128] * 5
    assert np.array_equal(plan.expected.sum(axis=0), counts)
    assert plan.stats["padded"] == plan.stats["trimmed"] == plan.stats["missing_uids"] == 0
    assert plan.stats["batches_with_repeats"] == 0
    grid = np.concatenate(plan.segments).reshape(-1, 32)
    assert repeats_in_batches(grid) == 0


def test_missing_images_are_reported_and_padded_with_repeats():
    budget = feed_budget(640, 5, 32, 1)
    counts = np.full(160, 4)
    available = np.ones(160, bool)
    available[:10] = False  # 10 uids x 4 copies lost to failed downloads
    plan = build_plan("multiset", counts, available, budget, np.random.default_rng(0))
    assert plan.stats["missing_uids"] == 10 and plan.stats["missing_samples"] == 40
    assert plan.stats["padded"] == 40 and plan.expected.sum() == 640
    fed = plan.expected.sum(axis=0).astype(np.int64)
    assert not fed[:10].any()
    # padding cycles through the 600 available occurrences: 40 of them are repeated, none twice
    extra = fed[10:] - 4
    assert extra.min() >= 0 and extra.max() <= 4 and extra.sum() == 40


def test_fill_to_trims_surplus_occurrences():
    counts = np.array([5, 3, 2])
    filled, padded, trimmed = fill_to(counts, 8, np.random.default_rng(0))
    assert (filled.sum(), padded, trimmed) == (8, 0, 2)
    assert (filled <= counts).all()


def test_schedule_segments_follow_their_rows():
    budget = feed_budget(640, 5, 32, 1)
    rng = np.random.default_rng(3)
    counts = np.stack([rng.multinomial(128, np.full(300, 1 / 300)) for _ in range(5)])
    plan = build_plan("schedule", counts, np.ones(300, bool), budget, np.random.default_rng(0))
    assert np.array_equal(plan.expected, counts)
    with pytest.raises(TrainError, match="schedule has 4 segments"):
        build_plan("schedule", counts[:4], np.ones(300, bool), budget, np.random.default_rng(0))


def test_subset_plan_writes_each_kept_uid_with_an_image_once():
    counts = np.array([1, 0, 1, 1, 0, 1])
    available = np.array([True, True, False, True, True, True])
    plan = build_plan("subset", counts, available, feed_budget(640, 5, 32, 1), np.random.default_rng(0))
    assert sorted(plan.segments[0].tolist()) == [0, 3, 5]
    assert plan.expected is None and plan.stats["missing_uids"] == 1
    with pytest.raises(TrainError, match="nothing to train on"):
        build_plan("subset", counts, np.zeros(6, bool), feed_budget(640, 5, 32, 1), np.random.default_rng(0))


def test_deal_spreads_copies_and_copy_numbers_count_them():
    counts = np.array([4, 4, 2, 6])
    grid = deal(counts, 8, 2, np.random.default_rng(0))
    assert grid.shape == (8, 2) and repeats_in_batches(grid) == 0
    assert np.array_equal(np.bincount(grid.ravel(), minlength=4), counts)
    assert copy_numbers(np.array([7, 3, 7, 7, 3])).tolist() == [0, 0, 1, 2, 1]
