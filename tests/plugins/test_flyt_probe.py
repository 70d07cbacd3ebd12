"""``filterbench flyt-probe``: the lookahead's parameter groups add up to the whole, and weighted training runs."""

from __future__ import annotations

import math

import numpy as np
from click.testing import CliRunner

from filterbench.harness.pool import Pool
from filterbench.plugins.flyt.probe import GROUPS, _fit, lookahead, probe_group, weighted_training


def test_lookahead_groups_partition_the_parameters_and_add_up(micro_world, tmp_path):
    fit = _fit(Pool(micro_world / "pool"), "clip_b32_similarity_score", tmp_path, batch=16, seed=0)
    names = list(fit.theta)
    assert all(sum(keep(n) for keep in GROUPS.values()) == 1 for n in names)  # each parameter in one group
    found = lookahead(fit, steps=2)
    for step in range(2):
        parts = sum(found[g][step] for g in GROUPS)
        assert math.isclose(found["all"][step], parts, rel_tol=1e-4, abs_tol=1e-9)  # v is linear in its parts
    assert any(abs(v) > 0 for v in found["all"])


def test_weighted_training_reports_the_loss_before_and_per_beta(micro_world, tmp_path):
    fit = _fit(Pool(micro_world / "pool"), "clip_b32_similarity_score", tmp_path, batch=16, seed=0)
    found = weighted_training(fit, [1.0, -1.0], steps=2, lr=1e-3, held_out=20)
    assert set(found) == {"before", 1.0, -1.0} and all(np.isfinite(v) for v in found.values())
    assert found[1.0] != found[-1.0] and found[1.0] != found["before"]


def test_the_cli_prints_one_line_per_group(micro_world):
    result = CliRunner().invoke(probe_group, ["lookahead", "--pool", str(micro_world / "pool"), "--steps", "2",
                                              "--batch", "16", "--column", "clip_b32_similarity_score"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["all", "image", "token", "text"]
