import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filterbench import get_sampler, get_scorer
from filterbench.harness.errors import PluginError
from filterbench.harness.pool import Pool
from filterbench.harness.stages.sample import load_score_table, pool_of, run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.uids import pairs_to_hex, read_subset
from filterbench.testing import fabricate_pool


def test_oracle_recipe_keeps_exactly_the_clean_pairs(tmp_path, store):
    pool = Pool(fabricate_pool(tmp_path / "world" / "pool", rows=300, images=False, seed=2))
    uids = [u for s in pool.shards for u in pool.read_metadata(s)["uid"]]
    kinds = np.random.default_rng(0).choice(["clean", "misaligned", "boilerplate"], size=len(uids))
    _write_oracle(tmp_path / "world", uids, kinds, np.zeros(len(uids), dtype=np.int64))
    scores = run_score(store, pool, get_scorer("nano_oracle"), progress=False)
    assert scores.manifest["fit_stats"]["clean_fraction"] == pytest.approx((kinds == "clean").mean())
    selection = run_sample(store, get_sampler("threshold", threshold=0.5, column="nano_oracle.clean"), [scores])
    kept = set(pairs_to_hex(read_subset(selection.path / "subset.npy")).tolist())
    assert kept == {u for u, k in zip(uids, kinds) if k == "clean"}


def test_oracle_needs_ground_truth(tiny_pool, store):
    with pytest.raises(PluginError, match=r"scorer 'nano_oracle': no ground truth at .*oracle"):
        run_score(store, Pool(tiny_pool), get_scorer("nano_oracle"), progress=False)


def test_oracle_recipe_takes_class_balanced_clean_pairs_best_first(tmp_path, store):
    """baselines/oracle.yaml (v5): 20% of the pool, only clean pairs, per-class quotas ~ sqrt(n_c) (one common
    factor for every class not exhausted), and within a class the best pairs by the L/14 score."""
    from pathlib import Path

    from filterbench.harness.manager import get_plugins
    from filterbench.harness.recipes import load_recipe

    pool = Pool(fabricate_pool(tmp_path / "world" / "pool", rows=1000, images=False, seed=3))
    uids = np.concatenate([pool.read_metadata(s)["uid"] for s in pool.shards])
    rng = np.random.default_rng(1)
    kinds = rng.choice(["clean", "misaligned"], p=[0.6, 0.4], size=len(uids))
    classes = rng.choice(4, p=[0.55, 0.25, 0.15, 0.05], size=len(uids))
    _write_oracle(tmp_path / "world", uids, kinds, classes)
    recipe = load_recipe(Path(__file__).parents[2] / "baselines" / "oracle.yaml")
    plugins = get_plugins()
    (spec,) = recipe.scorers
    scores = run_score(store, pool, plugins.scorer_class(spec.name)(**spec.params), progress=False)
    sampler = plugins.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    selection = run_sample(store, sampler, [scores])
    counts = np.load(selection.path / "counts.npy")  # pool order
    clean = kinds == "clean"
    assert counts.max() == 1 and counts.sum() == len(uids) // 5 and counts[~clean].sum() == 0
    clip = np.concatenate([_clip_l14(pool, s) for s in pool.shards])
    factors = []
    for c in range(4):
        members = np.flatnonzero(clean & (classes == c))
        kept = counts[members] > 0
        order = np.argsort(-clip[members], kind="stable")
        assert kept[order].tolist() == sorted(kept.tolist(), reverse=True)  # a best-first prefix of the class
        if kept.sum() < len(members):
            factors.append(kept.sum() / np.sqrt(len(members)))
    assert len(factors) >= 2 and max(factors) - min(factors) < 1.5 / np.sqrt(20)  # one factor, up to rounding


def _clip_l14(pool, shard):
    """The L/14 CLIP score computed directly from the npz features (cosine of the unit image and text vectors)."""
    features = pool.read_features(shard, ("l14_img", "l14_txt"))
    img = features["l14_img"].astype(np.float64)
    txt = features["l14_txt"].astype(np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return (img * txt).sum(1)


def _write_oracle(world, uids, kinds, classes):
    (world / "oracle").mkdir(exist_ok=True)
    pq.write_table(pa.table({"uid": list(uids), "noise_type": list(kinds), "object_class": classes}),
                   world / "oracle" / "part-0.parquet")


@pytest.mark.parametrize("balance", [0.0, 0.5])
def test_balanced_column_gives_per_class_quotas_of_the_best_clean_pairs(tmp_path, store, balance):
    """Top-k on ``balanced`` = per-class quotas min(n_c, t * n_c**balance), each class's best pairs by L/14 score."""
    pool = Pool(fabricate_pool(tmp_path / "world" / "pool", rows=600, images=False, seed=4))
    uids = np.concatenate([pool.read_metadata(s)["uid"] for s in pool.shards])
    rng = np.random.default_rng(2)
    classes = rng.choice(4, p=[0.55, 0.25, 0.15, 0.05], size=len(uids))  # a skewed class law
    classes[rng.random(len(uids)) < 0.05] = -1  # rows that show no object
    kinds = np.where(rng.random(len(uids)) < 0.7, "clean", "misaligned")
    _write_oracle(tmp_path / "world", uids, kinds, classes)
    scores = run_score(store, pool, get_scorer("nano_oracle", balance=balance), progress=False)
    k = 150
    kept = set(pairs_to_hex(read_subset(run_sample(store, get_sampler(
        "top_fraction", fraction=k / len(uids), column="nano_oracle.balanced"), [scores]).path / "subset.npy")).tolist())

    clip = np.concatenate([_clip_l14(pool, s) for s in pool.shards])
    eligible = (kinds == "clean") & (classes >= 0)
    sizes = {c: int((eligible & (classes == c)).sum()) for c in range(4)}
    lo, hi = 0.0, 1e6  # the threshold t whose quotas sum to k
    for _ in range(100):
        t = (lo + hi) / 2
        lo, hi = (t, hi) if sum(min(n, t * n ** balance) for n in sizes.values()) < k else (lo, t)
    expected = set()
    for c, n in sizes.items():
        rows = np.flatnonzero(eligible & (classes == c))
        quota = int(np.ceil(min(n, hi * n ** balance) - 0.5))  # rank r is kept when r + 0.5 <= t * n**balance
        expected |= set(uids[rows[np.argsort(-clip[rows], kind="stable")][:quota]].tolist())
    assert len(kept) == k
    assert len(kept ^ expected) <= 2  # the last quota slot can go to either of two classes at the threshold
    counts = {c: sum(u in kept for u in uids[eligible & (classes == c)]) for c in range(4)}
    if balance == 0.0:  # equal caps: every class that is not exhausted gets the same count (within one)
        capped = [counts[c] for c in range(4) if counts[c] < sizes[c]]
        assert max(capped) - min(capped) <= 1
    assert not kept & set(uids[~eligible].tolist())
