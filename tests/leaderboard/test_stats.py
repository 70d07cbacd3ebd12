"""The statistics behind the board: t quantiles, mean/std/CI, missing values."""

from __future__ import annotations

import math

import pytest
import scipy.stats
from filterbench.leaderboard.aggregate import Stat, group_slug, summarize, t_quantile_975

P = 0.975


def _closed_form_df4(p: float) -> float:
    alpha = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return 2 * math.sqrt(q - 1)


# closed forms of Student's t quantile for 1, 2 and 4 degrees of freedom (independent of the code under test)
TABLE = {1: math.tan(math.pi * (P - 0.5)), 2: (2 * P - 1) / math.sqrt(2 * P * (1 - P)),
         4: _closed_form_df4(P)}


@pytest.mark.parametrize(("dof", "expected"), sorted(TABLE.items()))
def test_t_quantile_matches_tables(dof, expected):
    assert t_quantile_975(dof) == pytest.approx(expected, rel=1e-12)


def test_t_quantile_matches_scipy():
    for dof in range(1, 61):
        assert t_quantile_975(dof) == pytest.approx(scipy.stats.t.ppf(0.975, dof), rel=1e-12)


def test_summarize():
    assert summarize([]) == Stat(0)
    assert summarize([0.3]) == Stat(1, 0.3)  # one seed: no spread, no interval
    assert summarize([0.1, None]) == Stat(2)  # a missing seed voids the statistic rather than biasing it
    s = summarize([0.1, 0.2, 0.4])
    sd = math.sqrt(((0.1 - s.mean) ** 2 + (0.2 - s.mean) ** 2 + (0.4 - s.mean) ** 2) / 2)
    assert s.mean == pytest.approx(0.7 / 3) and s.std == pytest.approx(sd)
    assert s.ci95 == pytest.approx(TABLE[2] * sd / math.sqrt(3))


def test_group_slug_matches_reference_columns():
    assert [group_slug(g) for g in ("ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval", "Average")] == \
        ["imagenet", "imagenet_dist_shifts", "vtab", "retrieval", "average"]
