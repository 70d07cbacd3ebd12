"""Per-stage cost: a stage's peak memory is its own, not the high-water mark of the process's history."""

import os
import resource

import numpy as np
import pytest

from filterbench.harness.provenance import CostMeter

pytestmark = pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                                reason="needs Linux's /proc/self/clear_refs to reset the high-water mark")

BIG_MB = 400


def _allocate(mb: int) -> None:
    block = np.ones(mb * 1024 * 1024 // 8)  # touched pages: resident
    assert block.sum() > 0


def test_a_stage_after_a_big_one_reports_its_own_peak():
    _allocate(BIG_MB)  # an earlier stage of the same process
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with CostMeter() as small:
        _allocate(10)
    assert process_peak > BIG_MB
    assert small.as_dict()["peak_rss_mb"] < process_peak - BIG_MB / 2, (small.peak_rss_mb, process_peak)


def test_an_inner_stage_does_not_hide_the_outer_stages_peak():
    with CostMeter() as outer:
        _allocate(BIG_MB)
        with CostMeter() as inner:  # a fit stage inside a score stage
            _allocate(10)
    assert inner.peak_rss_mb < outer.peak_rss_mb - BIG_MB / 2
    assert outer.peak_rss_mb > BIG_MB
