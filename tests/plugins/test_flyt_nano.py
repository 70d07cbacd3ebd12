"""FLYT on the nano-xs world: what a short fit learns, measured against the oracle's noise labels.

docs/methods/flyt.md gives the numbers and the measured reason for the expected failure below.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from filterbench import get_scorer
from filterbench.harness.stages.score import run_score

SHORT_FIT = {"steps": 60, "up_batch": 128, "down_batch": 128, "warmup": 5, "lr_scoring": 1e-2,
             "checkpoint_every": 60}


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / (n_pos n_neg))."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    return float((ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


@pytest.fixture(scope="module")
def short_fit(xs_world, tmp_path_factory):
    from filterbench.harness.store import Store

    store = Store(tmp_path_factory.mktemp("flyt_xs"))
    artifact = run_score(store, xs_world.pool(), get_scorer("flyt", **SHORT_FIT), progress=False)
    scores = np.concatenate([pq.read_table(artifact.path / f"parts/{stem}.parquet").column("score").to_numpy()
                             for stem in artifact.manifest["parts"]])
    kinds = xs_world.oracle()["noise_type"].to_numpy()
    return scores, kinds


def test_auc_helper_counts_ties_half():
    assert _auc(np.array([1.0, 2.0]), np.array([0.0])) == 1.0
    assert _auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_a_short_fit_ranks_clean_pairs_above_off_distribution_ones(short_fit):
    scores, kinds = short_fit
    assert _auc(scores[kinds == "clean"], scores[kinds == "off_distribution"]) > 0.65


@pytest.mark.xfail(strict=True, reason="measured on nano: FLYT's one-step lookahead does not prefer aligned pairs "
                                       "(AUC ~0.49 against misaligned; docs/methods/flyt.md, 'Does it hold on nano')")
def test_a_short_fit_ranks_clean_pairs_above_misaligned_ones(short_fit):
    scores, kinds = short_fit
    assert _auc(scores[kinds == "clean"], scores[kinds == "misaligned"]) > 0.6
