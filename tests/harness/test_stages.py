"""Score and sample stages: keys, reuse, resume after a kill, output checks, mode invariants."""

import numpy as np
import pytest

from filterbench import get_sampler, get_scorer
from filterbench.harness.contract import Budget, Sampler, Scorer
from filterbench.harness.errors import InvariantError, PluginError
from filterbench.harness.pool import Pool
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score


class FlakyScorer(Scorer):
    """Caption length; fails on the second shard while `fail` is set (simulates a killed stage)."""

    name = "flaky_len"
    fail = False
    calls: list = []

    def score_batch(self, batch, ctx):
        FlakyScorer.calls.append(batch.shard)
        if FlakyScorer.fail and len(FlakyScorer.calls) > 1:
            raise KeyboardInterrupt("killed")
        return np.array([len(t) for t in batch.metadata["text"]], dtype=np.float32)

    from filterbench.harness.contract import Needs

    needs = Needs(metadata=("text",))


def test_rerun_is_a_no_op_and_keys_follow_params(tiny_pool, store):
    pool = Pool(tiny_pool)
    first = run_score(store, pool, get_scorer("clip_score", model="l14"), progress=False)
    mtime = (first.path / "manifest.json").stat().st_mtime_ns
    again = run_score(store, pool, get_scorer("clip_score", model="l14"), progress=False)
    assert again.path == first.path and (again.path / "manifest.json").stat().st_mtime_ns == mtime
    other = run_score(store, pool, get_scorer("clip_score", model="b32"), progress=False)
    assert other.key != first.key
    manifest = first.manifest
    assert manifest["rows"] == 600 and manifest["pool_key"] == store.find(manifest["pool_key"]).key
    assert manifest["cost"]["wall_s"] >= 0 and "git" in manifest["provenance"]
    assert set(manifest["outputs"]) == {f"parts/{s.stem}.parquet" for s in pool.shards}


def test_killed_stage_resumes_only_missing_shards_with_identical_bytes(tiny_pool, store, tmp_path):
    from filterbench.harness.store import Store

    pool = Pool(tiny_pool)
    FlakyScorer.calls, FlakyScorer.fail = [], True
    with pytest.raises(KeyboardInterrupt):
        run_score(store, pool, FlakyScorer(), progress=False)
    assert not list((store.root / "scores").glob("flaky_len-*"))  # nothing looks complete
    FlakyScorer.calls, FlakyScorer.fail = [], False
    resumed = run_score(store, pool, FlakyScorer(), progress=False)
    assert FlakyScorer.calls == [pool.shards[1].stem]  # only the shard that did not finish
    clean = run_score(Store(tmp_path / "clean"), pool, FlakyScorer(), progress=False)
    for stem in resumed.manifest["parts"]:
        assert (resumed.path / f"parts/{stem}.parquet").read_bytes() == \
            (clean.path / f"parts/{stem}.parquet").read_bytes()


def test_workers_do_not_change_outputs(tiny_pool, tmp_path):
    from filterbench.harness.store import Store

    one = run_score(Store(tmp_path / "a"), Pool(tiny_pool), get_scorer("clip_score"), workers=1, progress=False)
    two = run_score(Store(tmp_path / "b"), Pool(tiny_pool), get_scorer("clip_score"), workers=2, progress=False)
    assert one.key == two.key
    assert one.manifest["outputs"] == two.manifest["outputs"]


class BadScorer(Scorer):
    name = "bad"
    mode = "nan"

    def score_batch(self, batch, ctx):
        out = np.ones(len(batch), dtype=np.float32)
        if BadScorer.mode == "nan":
            out[4] = np.nan
            return out
        return out[:-1]


@pytest.mark.parametrize("mode,message", [("nan", r"column 'score' is not finite \(nan\) for uid [0-9a-f]{32}"),
                                          ("short", r"column .score. has shape \(\d+,\) on shard [0-9a-f]{32}")])
def test_invalid_scorer_output_is_refused_with_no_artifact(tiny_pool, store, mode, message):
    BadScorer.mode = mode
    with pytest.raises(PluginError, match=rf"scorer 'bad' {message}"):
        run_score(store, Pool(tiny_pool), BadScorer(), progress=False)
    assert not list((store.root / "scores").glob("bad-*"))


def test_sample_stage_writes_counts_and_sorted_subset(tiny_pool, store):
    from filterbench.harness.uids import read_subset

    scores = run_score(store, Pool(tiny_pool), get_scorer("clip_score"), progress=False)
    selection = run_sample(store, get_sampler("top_fraction", fraction=0.25), [scores])
    counts = np.load(selection.path / "counts.npy")
    assert counts.dtype == np.uint32 and counts.shape == (600,) and counts.sum() == 150
    subset = read_subset(selection.path / "subset.npy")
    assert len(subset) == 150
    stats = selection.manifest["stats"]
    assert stats["unique_uids"] == 150 and stats["max_count"] == 1
    assert not (selection.path / "scratch").exists()  # the memory-mapped score columns are not left behind
    again = run_sample(store, get_sampler("top_fraction", fraction=0.25), [scores])
    assert again.path == selection.path
    seeded = run_sample(store, get_sampler("top_fraction", fraction=0.25), [scores], seed=1)
    assert seeded.key != selection.key


class Repeater(Sampler):
    name = "repeater"
    mode = "multiset"
    broken = False

    def sample(self, scores, budget, rng):
        counts = rng.multinomial(budget.samples_seen, np.full(budget.pool_size, 1 / budget.pool_size))
        return counts + (1 if Repeater.broken else 0)


class PerSegment(Sampler):
    name = "per_segment"
    mode = "schedule"

    def sample(self, scores, budget, rng):
        return np.stack([rng.integers(0, 2, budget.pool_size) for _ in range(budget.segments)])


def test_multiset_and_schedule_outputs(tiny_pool, store):
    scores = run_score(store, Pool(tiny_pool), get_scorer("clip_score"), progress=False)
    budget = Budget(samples_seen=1000, segments=5, pool_size=600)
    multiset = run_sample(store, Repeater(), [scores], budget=budget)
    assert np.load(multiset.path / "counts.npy").sum() == 1000
    assert multiset.manifest["stats"]["max_count"] >= 2
    schedule = run_sample(store, PerSegment(), [scores], budget=budget)
    counts = np.load(schedule.path / "counts.npy")
    assert counts.shape == (5, 600)
    assert sorted(p.name for p in schedule.path.glob("subset-seg*.npy")) == [f"subset-seg{e:03d}.npy" for e in range(5)]
    Repeater.broken = True
    try:
        with pytest.raises(InvariantError, match="sampler 'repeater' .* counts sum to 1600; multiset counts"):
            run_sample(store, Repeater(), [scores], budget=budget, seed=7)
    finally:
        Repeater.broken = False


def test_subset_sampler_with_repeats_is_refused():
    class Cheat(Sampler):
        name = "cheat"

        def sample(self, scores, budget, rng):
            return np.full(budget.pool_size, 2)

    with pytest.raises(InvariantError, match="subset counts are 0 or 1"):
        Cheat()(np.zeros(10), 10)


def test_a_moved_pool_is_read_where_it_is_now(tiny_pool, store, tmp_path):
    """A pool is identified by its bytes: the same pool copied elsewhere keeps its key, and once the first copy
    is gone the store must read the tars of the copy that was registered last, or say clearly that none is left."""
    import shutil

    from filterbench.harness.errors import StoreError
    from filterbench.harness.stages.pool import pool_root, pool_shards_dir, register_pool

    first = register_pool(store, Pool(tiny_pool))
    copy = tmp_path / "elsewhere" / tiny_pool.name
    shutil.copytree(tiny_pool, copy)
    again = register_pool(store, Pool(copy))
    assert again.key == first.key and again.path == first.path
    assert pool_root(again) == copy.resolve() and pool_shards_dir(again) == copy.resolve() / "shards"
    assert again.manifest["pool_root"] == str(tiny_pool.resolve())  # the ID card itself is never rewritten
    again.verify()
    shutil.rmtree(copy)
    with pytest.raises(StoreError, match="no tar shards at .*pass the pool's current folder with --pool"):
        pool_shards_dir(store.find(first.key, kind="pools"))
