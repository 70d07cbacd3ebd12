import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filterbench import get_sampler, get_scorer
from filterbench.harness.errors import PluginError
from filterbench.harness.pool import Pool
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.uids import pairs_to_hex, read_subset
from filterbench.testing import fabricate_pool


def test_oracle_recipe_keeps_exactly_the_clean_pairs(tmp_path, store):
    pool = Pool(fabricate_pool(tmp_path / "world" / "pool", rows=300, images=False, seed=2))
    uids = [u for s in pool.shards for u in pool.read_metadata(s)["uid"]]
    kinds = np.random.default_rng(0).choice(["clean", "misaligned", "boilerplate"], size=len(uids))
    (tmp_path / "world" / "oracle").mkdir()
    pq.write_table(pa.table({"uid": uids, "noise_type": kinds.tolist()}), tmp_path / "world/oracle/part-0.parquet")
    scores = run_score(store, pool, get_scorer("nano_oracle"), progress=False)
    assert scores.manifest["fit_stats"]["clean_fraction"] == pytest.approx((kinds == "clean").mean())
    selection = run_sample(store, get_sampler("threshold", threshold=0.5, column="nano_oracle.clean"), [scores])
    kept = set(pairs_to_hex(read_subset(selection.path / "subset.npy")).tolist())
    assert kept == {u for u, k in zip(uids, kinds) if k == "clean"}


def test_oracle_needs_ground_truth(tiny_pool, store):
    with pytest.raises(PluginError, match=r"scorer 'nano_oracle': no ground truth at .*oracle"):
        run_score(store, Pool(tiny_pool), get_scorer("nano_oracle"), progress=False)


def test_oracle_recipe_is_the_clip_selection_with_only_clean_pairs(tmp_path, store):
    """baselines/oracle.yaml (v2): the clean pairs, and among them the best floor(0.3 N) by the L/14 CLIP score."""
    from pathlib import Path

    from filterbench.harness.manager import get_plugins
    from filterbench.harness.recipes import load_recipe

    pool = Pool(fabricate_pool(tmp_path / "world" / "pool", rows=400, images=False, seed=3))
    meta = [pool.read_metadata(s) for s in pool.shards]
    uids = np.concatenate([m["uid"] for m in meta])
    kinds = np.random.default_rng(1).choice(["clean", "misaligned"], p=[0.6, 0.4], size=len(uids))
    (tmp_path / "world" / "oracle").mkdir()
    pq.write_table(pa.table({"uid": uids, "noise_type": kinds.tolist()}), tmp_path / "world/oracle/part-0.parquet")
    recipe = load_recipe(Path(__file__).parents[2] / "baselines" / "oracle.yaml")
    plugins = get_plugins()
    scores = [run_score(store, pool, plugins.scorer_class(s.name)(**s.params), progress=False)
              for s in recipe.scorers]
    sampler = plugins.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    kept = set(pairs_to_hex(read_subset(run_sample(store, sampler, scores).path / "subset.npy")).tolist())

    clip = np.concatenate([_clip_l14(pool, s) for s in pool.shards])
    clean = np.flatnonzero(kinds == "clean")
    order = clean[np.lexsort((uids[clean], -clip[clean]))]  # best first, ties by ascending uid
    expected = set(uids[order[: int(0.3 * len(uids))]].tolist())
    assert len(kept) == int(0.3 * len(uids)) and kept == expected


def _clip_l14(pool, shard):
    """The L/14 CLIP score computed directly from the npz features (cosine of the unit image and text vectors)."""
    features = pool.read_features(shard, ("l14_img", "l14_txt"))
    img = features["l14_img"].astype(np.float64)
    txt = features["l14_txt"].astype(np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return (img * txt).sum(1)
