"""The ``chain`` sampler against direct numpy computations; the negCLIPLoss ∩ NormSim recipe end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (imported once here so forked workers do not each import it)

from filterbench.harness.contract import Budget, ScoreTable
from filterbench.harness.errors import ParamsError
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.recipes import load_recipe
from filterbench.harness.stages.sample import load_score_table, pool_of, run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.testing import check_sampler, fabricate_pool
from filterbench.harness.uids import UID_DTYPE
from filterbench.plugins.chain_sampler import ChainSampler

REPO = Path(__file__).resolve().parents[2]


def table(n: int = 1000, seed: int = 0) -> ScoreTable:
    rng = np.random.default_rng(seed)
    uids = np.sort(np.frombuffer(rng.bytes(16 * n), dtype=UID_DTYPE))
    return ScoreTable({"a.score": rng.standard_normal(n).astype(np.float32),
                       "b.score": rng.standard_normal(n).astype(np.float32)}, uids)


def top(values: np.ndarray, k: int, among: np.ndarray) -> np.ndarray:
    """Mask of the k largest values among the rows of ``among`` (values distinct, so no tie rule needed)."""
    index = np.flatnonzero(among)
    mask = np.zeros(len(values), bool)
    mask[index[np.argsort(-values[index], kind="stable")[:k]]] = True
    return mask


def run(steps, scores: ScoreTable) -> np.ndarray:
    return ChainSampler(steps=steps)(scores, Budget(len(scores), 1, len(scores))).astype(bool)


def test_two_stage_fraction_of_the_pool():
    """negCLIPLoss paper: top int(0.3 N) by A, then among those the top int(0.2 N) by B (N: the pool)."""
    t = table()
    a, b = t.columns["a.score"], t.columns["b.score"]
    stage1 = top(a, 300, np.ones(1000, bool))
    expected = top(b, 200, stage1)
    got = run([{"column": "a.score", "fraction": 0.3}, {"column": "b.score", "fraction": 0.2}], t)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == 200


def test_fraction_of_the_survivors():
    t = table()
    a, b = t.columns["a.score"], t.columns["b.score"]
    expected = top(b, int(np.floor(0.5 * 300)), top(a, 300, np.ones(1000, bool)))
    got = run([{"column": "a.score", "fraction": 0.3},
               {"column": "b.score", "fraction": 0.5, "of": "survivors"}], t)
    np.testing.assert_array_equal(got, expected)


def test_rank_among_pool_is_an_intersection_with_datacomps_threshold():
    """DataComp's image-based ∩ CLIP: the threshold sorted_desc[int(N*f)] is taken over the whole pool."""
    t = table()
    a, b = t.columns["a.score"], t.columns["b.score"]
    keep = b > 0
    threshold = -np.sort(-a)[int(1000 * 0.3)]
    expected = keep & (a >= threshold)
    filt = {"column": "b.score", "threshold": 0.0}
    clip = {"column": "a.score", "fraction": 0.3, "rank_among": "pool", "rule": "datacomp"}
    np.testing.assert_array_equal(run([filt, clip], t), expected & (b >= 0))
    np.testing.assert_array_equal(run([clip, filt], t), expected & (b >= 0))
    assert (a >= threshold).sum() == 301  # DataComp keeps int(N*f) + 1 rows


def test_datacomp_rule_among_survivors_counts_ties():
    values = np.array([5, 4, 4, 4, 3, 2, 1, 0], np.float32)
    scores = ScoreTable({"x": values, "y": np.ones(8, np.float32)})
    steps = [{"column": "y", "threshold": 1.0}, {"column": "x", "fraction": 0.25, "rule": "datacomp"}]
    got = run(steps, scores)
    np.testing.assert_array_equal(got, values >= 4)  # int(8 * 0.25) = 2 -> t = 4, ties kept


def test_exact_rule_breaks_ties_by_uid():
    uids = np.array([(0, 3), (0, 1), (0, 2), (0, 0)], dtype=UID_DTYPE)
    scores = ScoreTable({"x": np.array([1, 1, 1, 0], np.float32)}, uids)
    np.testing.assert_array_equal(run([{"column": "x", "fraction": 0.5}], scores), [False, True, True, False])


def test_thresholds_nan_and_exhausted_survivors():
    x = np.array([0.1, np.nan, 0.5, 0.9, 0.3], np.float32)
    scores = ScoreTable({"x": x, "y": np.arange(5, dtype=np.float32)})
    np.testing.assert_array_equal(run([{"column": "x", "threshold": 0.3}], scores), [0, 0, 1, 1, 1])
    got = run([{"column": "x", "threshold": 0.8}, {"column": "y", "fraction": 1.0}], scores)
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 0])  # asks 5 of 1 survivor: keeps the survivor
    np.testing.assert_array_equal(run([{"column": "x", "fraction": 1.0}], scores), [1, 0, 1, 1, 1])


def test_params_are_validated():
    with pytest.raises(ParamsError):
        ChainSampler(steps=[{"column": "x", "threshold": 0.1, "fraction": 0.2}])
    with pytest.raises(ParamsError):
        ChainSampler(steps=[{"column": "x"}])
    with pytest.raises(ParamsError):
        ChainSampler(steps=[{"column": "x", "fraction": 0.2, "rank_among": "pool", "of": "survivors"}])
    with pytest.raises(ParamsError):
        ChainSampler(steps=[])
    with pytest.raises(ParamsError):
        ChainSampler(steps=[{"column": "x", "fraction": 1.5}])


def test_conformance():
    sampler = ChainSampler(steps=[{"column": "a.score", "fraction": 0.3},
                                  {"column": "b.score", "fraction": 0.2}])
    assert sampler.score_columns() == ("a.score", "b.score")
    assert check_sampler(sampler).sum() == 100


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return fabricate_pool(tmp_path_factory.mktemp("chain") / "pool", rows=200, shards=2, images=False,
                          feature_sets={"l14": 12})


def test_negcliploss_normsim_recipe_end_to_end(pool, tmp_path):
    """The recipe's two stages through the real stages, against the score columns read back from the store."""
    np.save(tmp_path / "t.npy", np.random.default_rng(0).standard_normal((20, 12)).astype(np.float32))
    recipe = load_recipe(REPO / "baselines/negcliploss_normsim.yaml")
    pl = Plugins(load_entry_points=False, extra=tuple((m, f"filterbench.plugins.{m}")
                                                      for m in ("negcliploss", "normsim", "chain_sampler")))
    params = {"negcliploss": {"batch_size": 32, "num_batches": 2},
              "normsim": {"target": str(tmp_path / "t.npy")}}
    store = Store(tmp_path / "store")
    artifacts = [run_score(store, Pool(pool), pl.scorer_class(s.name)(**{**s.params, **params[s.name]}),
                           plugins=pl, progress=False) for s in recipe.scorers]
    sampler = pl.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    counts = np.load(run_sample(store, sampler, artifacts, plugins=pl).path / "counts.npy").astype(bool)
    scores = load_score_table(artifacts, pool_of(store, artifacts))
    ncl, ns = scores.columns["negcliploss.score"], scores.columns["normsim.norm_inf"]
    expected = top(ns, int(0.2 * 200), top(ncl, int(0.3 * 200), np.ones(200, bool)))
    np.testing.assert_array_equal(counts, expected)


def test_union_keeps_what_any_member_keeps_each_over_the_whole_pool():
    from filterbench.plugins.chain_sampler import UnionSampler

    scores = table(1000, seed=4)
    scores.columns["b.score"][[3, 7]] = np.nan  # NaN never passes a member
    sampler = UnionSampler(members=[{"column": "a.score", "fraction": 0.15}, {"column": "b.score", "fraction": 0.1},
                                    {"column": "b.score", "threshold": 2.5}])
    counts = sampler(scores, Budget(1000, 1, 1000), 0)
    everyone = np.ones(1000, bool)
    a, b = scores.column("a.score"), scores.column("b.score")
    expected = top(a, 150, everyone) | top(np.nan_to_num(b, nan=-np.inf), 100, everyone) | (b >= 2.5)
    assert counts.tolist() == expected.astype(np.uint32).tolist()
    assert counts.sum() < 250 and counts[[3, 7]].tolist() == [int(expected[3]), int(expected[7])]
    assert sampler.score_columns() == ("a.score", "b.score")
    check_sampler(sampler, columns=["a.score", "b.score"])
