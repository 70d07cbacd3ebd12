"""DynamiCS (``dynamics_clusters`` scorer, ``dynamics`` schedule sampler) against independent computations.

The reference side redoes ``cluster_scaling.py``'s probabilities with pandas (value counts, numpy rounding of
the resampled counts, ``Series.round(6)``), the greedy refinement as a plain one-centroid-at-a-time loop, and
the assignment as a numpy argmax over the kept centroids.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from filterbench.harness.contract import Budget
from filterbench.harness.errors import InvariantError, ParamsError
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.poolwrite import write_npz
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.testing import check_sampler, check_scorer, fabricate_pool
from filterbench.plugins.dynamics import (
    DynamicsClustersScorer,
    DynamicsSampler,
    cluster_table,
    exact_quotas,
    expected_kept,
    official_probabilities,
    realised_fractions,
    refine_centroids,
    water_level,
)

REPO = Path(__file__).resolve().parents[2]
COLUMN = "dynamics_clusters.cluster"


def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=(("dynamics", "filterbench.plugins.dynamics"),))


def labels_of(sizes, ids=None) -> np.ndarray:
    """Cluster ids (float32, as the score column holds them) for clusters of the given sizes, shuffled."""
    ids = np.arange(len(sizes)) if ids is None else np.asarray(ids)
    values = np.repeat(ids, sizes).astype(np.float32)
    return values[np.random.default_rng(1).permutation(len(values))]


def reference_probabilities(values: np.ndarray, alpha: float, target: int) -> pd.Series:
    """cluster_scaling.py's table, redone: cluster id -> probability."""
    counts = pd.Series(values).value_counts().rename_axis("cluster_index").reset_index(name="count")
    transformed = counts["count"].to_numpy(dtype=float) ** alpha
    counts["resampled_count"] = np.round(transformed / transformed.sum() * target).astype(int)
    counts["probability"] = (counts["resampled_count"] / counts["count"]).round(6)
    return counts.set_index("cluster_index")["probability"]


def zipf_sizes(clusters: int, exponent: float = 1.1, largest: int = 3000) -> np.ndarray:
    return np.maximum(1, (largest / np.arange(1, clusters + 1) ** exponent).astype(np.int64))


# -- probabilities -------------------------------------------------------------------------------------------
def test_probabilities_by_hand():
    """sizes 1, 4, 16, 81 with alpha 0.5: S = 16, N = 102, T = 51, r = round(51 * [1, 2, 4, 9] / 16)."""
    values = labels_of([1, 4, 16, 81], ids=[40, 3, 17, 5])
    p = DynamicsSampler(alpha=0.5).probabilities(values)
    expected = {40: 3.0, 3: 1.5, 17: 0.8125, 5: 0.358025}  # 3/1, 6/4, 13/16, round(29/81, 6)
    for cluster, prob in expected.items():
        assert np.all(p[values == cluster] == prob), (cluster, np.unique(p[values == cluster]))


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
def test_probabilities_equal_reference_formula(alpha):
    sizes = np.array([1, 2, 3, 7, 20, 150, 900, 4000])
    values = labels_of(sizes, ids=[11, 2, 7, 0, 5, 3, 9, 1])
    sampler = DynamicsSampler(alpha=alpha)
    reference = reference_probabilities(values, alpha, round(0.5 * len(values)))
    assert np.array_equal(sampler.probabilities(values), reference.loc[values].to_numpy())
    assert (reference < 1).any() and ((reference > 1).any() or alpha > 0.5)  # p > 1 for small clusters


def test_rounding_to_zero_and_half_to_even():
    """r_c = round(0.05) = 0 gives p = 0 (trap 4); r = round(0.5) = 0 by numpy's half-to-even rule."""
    values = labels_of([1, 999])
    p = DynamicsSampler(alpha=1.0, budget_fraction=0.05).probabilities(values)
    assert set(np.unique(p[values == 0])) == {0.0} and set(np.unique(p[values == 1])) == {0.05005}
    sampler = DynamicsSampler(alpha=1.0, budget_fraction=0.05)
    counts = sampler({COLUMN: values}, Budget(50, 5, len(values)), 0)
    assert counts[:, values == 0].sum() == 0
    assert np.array_equal(official_probabilities(np.array([1, 1, 2]), 1.0, 2), [0.0, 0.0, 0.5])


def test_water_level_against_bisection():
    rng = np.random.default_rng(3)
    for alpha in (0.0, 0.2, 0.7, 1.0):
        sizes = rng.integers(1, 5000, size=200)
        for fraction in (0.01, 0.3, 0.5, 0.9):
            target = round(fraction * sizes.sum())
            level = water_level(sizes, alpha, target)
            lo, hi = 0.0, float(sizes.max())
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if np.minimum(sizes, mid * sizes ** alpha).sum() < target else (lo, mid)
            assert math.isclose(level, hi, rel_tol=1e-9), (alpha, fraction)
            assert math.isclose(exact_quotas(sizes, alpha, target).sum(), target, rel_tol=1e-12)
    assert water_level(np.array([3, 4]), 0.2, 7) == math.inf


# -- refinement ----------------------------------------------------------------------------------------------
def naive_refine(centroids: np.ndarray, threshold: float) -> list[int]:
    kept: list[int] = []
    for i, c in enumerate(centroids):
        if not kept or max(float(np.float32(c @ centroids[k])) for k in kept) < np.float32(threshold):
            kept.append(i)
    return kept


def ring(*degrees: float) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad), np.zeros_like(rad)], axis=1).astype(np.float32)


def test_refinement_keeps_expected_centroids():
    # 0 and 20 degrees: cos 0.94 (drop); 70: cos 0.34 to 0 (keep); 85: cos 0.97 to 70 (drop); 180: keep
    assert refine_centroids(ring(0, 20, 70, 85, 180), 0.70).tolist() == [0, 2, 4]
    # the boundary: a cosine of exactly 0.70 (float32) is dropped, as the reference's `D >= threshold`
    exact = np.array([[1, 0, 0], [0.7, np.sqrt(0.51), 0], [0.69, np.sqrt(1 - 0.69 ** 2), 0]], np.float32)
    assert float(exact[0] @ exact[1]) == float(np.float32(0.7))
    # the third is at cosine 0.9999 to the second, but that one was dropped: only kept ones count
    assert refine_centroids(exact, 0.70).tolist() == [0, 2]
    assert refine_centroids(exact[[1, 2, 0]], 0.70).tolist() == [0]  # scanned first, it drops both others


def test_refinement_depends_on_scan_order():
    """A-B and B-C are near (cos 0.77), A-C are not (0.17): A first keeps A and C, B first keeps only B."""
    a, b, c = ring(0, 40, 80)
    assert refine_centroids(np.stack([a, b, c]), 0.70).tolist() == [0, 2]
    assert refine_centroids(np.stack([b, a, c]), 0.70).tolist() == [0]
    assert refine_centroids(np.stack([c, b, a]), 0.70).tolist() == [0, 2]


@pytest.mark.parametrize("block", [1, 7, 64, 1024])
def test_blocked_refinement_equals_sequential_scan(block):
    rng = np.random.default_rng(5)
    centroids = rng.standard_normal((300, 6)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    expected = naive_refine(centroids, 0.70)
    assert 10 < len(expected) < 290
    assert refine_centroids(centroids, 0.70, block=block).tolist() == expected


# -- scorer --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return fabricate_pool(tmp_path_factory.mktemp("dyn") / "pool", rows=600, shards=2, images=False,
                          feature_sets={"l14": 12})


def test_scorer_conformance_and_bruteforce_assignment(pool, tmp_path):
    scorer = DynamicsClustersScorer(feature="l14_img", clusters=40, refine_threshold=0.25)
    artifact = check_scorer(scorer, tmp_path, pool=pool, plugins=plugins())
    fit = artifact.manifest["fit_stats"]
    assert fit["clusters_trained"] == min(40, 600 // 39) and fit["train_points"] == 600
    assert 1 <= fit["clusters_kept"] < fit["clusters_trained"]  # 0.25 drops some of 15 centroids in 12-d
    centroids = np.load(artifact.path / "fit" / "centroids.npy")
    assert len(centroids) == fit["clusters_kept"]
    assert np.triu(centroids @ centroids.T, 1).max() < 0.25  # kept ones are pairwise below the threshold
    p = Pool(pool)
    for shard in p.shards:
        x = p.read_features(shard, ("l14_img",))["l14_img"]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sims = x @ centroids.T
        part = pq.read_table(artifact.path / "parts" / f"{shard.stem}.parquet")
        assert np.array_equal(part.column("cluster").to_numpy(), sims.argmax(1).astype(np.float32))
        np.testing.assert_allclose(part.column("similarity").to_numpy(), sims.max(1), atol=1e-5)


def test_cluster_count_rule_and_params():
    assert DynamicsClustersScorer().params.feature == "dino_img"
    assert DynamicsClustersScorer().needs.features == ("dino_img",)
    with pytest.raises(ParamsError):
        DynamicsClustersScorer(gpu="maybe")
    with pytest.raises(ParamsError):
        DynamicsSampler(budget_mode="roughly")


def test_gpu_require_fails_without_gpu(pool, tmp_path):
    from filterbench.plugins._faiss import gpu_available

    if gpu_available():
        pytest.skip("a faiss GPU build sees a GPU here")
    with pytest.raises(ParamsError, match="gpu=require"):
        run_score(Store(tmp_path), Pool(pool), DynamicsClustersScorer(feature="l14_img", gpu="require"),
                  plugins=plugins(), progress=False)


# -- sampler -------------------------------------------------------------------------------------------------
def test_sampler_conformance():
    counts = check_sampler(DynamicsSampler(budget_mode="exact"), columns=[COLUMN])  # random floats: singletons
    assert counts.shape == (5, 500) and counts.max() <= 1 and counts.any()
    # the reference's rounding keeps no singleton cluster (r_c rounds to 0): an empty selection, which the
    # harness refuses rather than train on nothing
    with pytest.raises(InvariantError, match=r"sampler 'dynamics' \(mode schedule\) selected no uid of 500"):
        check_sampler(DynamicsSampler(budget_mode="official"), columns=[COLUMN])
    for mode in ("official", "exact"):
        sampler = DynamicsSampler(budget_mode=mode)
        values = labels_of(zipf_sizes(30, largest=200))
        first = sampler({COLUMN: values}, Budget(len(values), 5, len(values)), 0)
        assert first.tobytes() == sampler({COLUMN: values}, Budget(len(values), 5, len(values)), 0).tobytes()


@pytest.mark.parametrize("mode", ["official", "exact"])
def test_segment_draws_differ_and_reproduce(mode):
    values = labels_of(zipf_sizes(40))
    n = len(values)
    sampler = DynamicsSampler(budget_mode=mode)
    counts = sampler({COLUMN: values}, Budget(n, 5, n), np.random.default_rng(11))
    assert counts.dtype == np.uint32 and counts.shape == (5, n) and counts.max() == 1
    again = sampler({COLUMN: values}, Budget(n, 5, n), np.random.default_rng(11))
    assert counts.tobytes() == again.tobytes()
    for e in range(5):
        for f in range(e + 1, 5):
            assert not np.array_equal(counts[e], counts[f]), (e, f)
    other = sampler({COLUMN: values}, Budget(n, 5, n), np.random.default_rng(12))
    assert not np.array_equal(counts, other)
    three = sampler({COLUMN: values}, Budget(n, 3, n), np.random.default_rng(11))
    assert np.array_equal(three, counts[:3])  # row e depends on the seed and e only


def test_official_realised_fraction_below_budget():
    sizes = zipf_sizes(300)
    values = labels_of(sizes)
    n = len(values)
    sampler = DynamicsSampler()
    counts = sampler({COLUMN: values}, Budget(n, 5, n), 0)
    fractions = realised_fractions(counts)
    table = cluster_table(values)
    expected = expected_kept(table.sizes, sampler.cluster_probabilities(table)) / n
    assert np.all(fractions < 0.5) and expected < 0.45
    np.testing.assert_allclose(fractions, expected, atol=5 * math.sqrt(0.25 / n))
    # every member of a cluster with p >= 1 is kept in every segment
    p = sampler.probabilities(values)
    assert counts[:, p >= 1].min() == 1 and (p >= 1).sum() > 0


def test_exact_mode_hits_budget_with_right_marginals():
    sizes = zipf_sizes(60, largest=800)
    values = labels_of(sizes)
    n = len(values)
    sampler = DynamicsSampler(budget_mode="exact")
    segments = 400
    counts = sampler({COLUMN: values}, Budget(n, segments, n), 0)
    assert np.all(counts.sum(axis=1) == round(0.5 * n))
    np.testing.assert_array_equal(realised_fractions(counts), round(0.5 * n) / n)
    table = cluster_table(values)
    quotas = exact_quotas(table.sizes, 0.2, round(0.5 * n))
    per_cluster = np.stack([np.bincount(table.cluster_of, weights=row, minlength=len(sizes))
                            for row in counts])
    assert np.all(per_cluster <= table.sizes) and np.all(np.abs(per_cluster - quotas) < 1.0 + 1e-9)
    np.testing.assert_allclose(per_cluster.mean(axis=0), quotas, atol=0.1)  # systematic rounding is unbiased
    kept_rate = counts.mean(axis=0)  # per uid, against x_c / n_c
    np.testing.assert_allclose(kept_rate, (quotas / table.sizes)[table.cluster_of], atol=0.12)
    whole = DynamicsSampler(budget_mode="exact", budget_fraction=1.0)
    everything = whole({COLUMN: values}, Budget(n, 2, n), 0)
    assert np.all(everything == 1)


# -- the whole chain -----------------------------------------------------------------------------------------
def blob_pool(root: Path, sizes: np.ndarray, dim: int = 16, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A fabricated pool whose ``dino_img`` rows are noisy copies of one direction per class; class per row"""
    rng = np.random.default_rng(seed)
    n = int(sizes.sum())
    pool = fabricate_pool(root, rows=n, shards=2, images=False, feature_sets={"l14": 8}, seed=seed)
    classes = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    centres = rng.standard_normal((len(sizes), dim))
    features = centres[classes] + 0.15 * rng.standard_normal((n, dim))
    p = Pool(pool)
    for shard in p.shards:
        with np.load(shard.npz) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["dino_img"] = features[shard.offset:shard.offset + shard.rows].astype(np.float16)
        write_npz(shard.npz, arrays)
    return pool, classes


def test_recipe_raises_rare_class_share_on_a_zipf_pool(tmp_path):
    """Through the real stages with the recipe's params: rare classes get a larger share than in the pool."""
    from filterbench.harness.recipes import check_recipe, load_recipe

    recipe = load_recipe(REPO / "baselines" / "dynamics.yaml")
    pl = plugins()
    check_recipe(recipe, pl)
    sizes = zipf_sizes(20, exponent=1.1, largest=1500)
    pool, classes = blob_pool(tmp_path / "pool", sizes)
    store = Store(tmp_path / "store")
    (spec,) = recipe.scorers
    scorer = pl.scorer_class(spec.name)(**spec.params)
    scores = run_score(store, Pool(pool), scorer, plugins=pl, progress=False)
    sampler = pl.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    budget = Budget(len(classes), 5, len(classes))
    selection = run_sample(store, sampler, [scores], budget, plugins=pl)
    counts = np.load(selection.path / "counts.npy")
    assert counts.shape == (5, len(classes)) and len(list(selection.path.glob("subset-seg*.npy"))) == 5
    totals = selection.manifest["stats"]["segment_totals"]
    assert all(t < 0.5 * len(classes) for t in totals)  # official mode: below the nominal budget
    rare = np.isin(classes, np.arange(15, 20))  # the rarest quarter of the classes
    kept_share = np.mean([rare[row > 0].mean() for row in counts])
    assert kept_share > 1.5 * rare.mean(), (kept_share, rare.mean())


# -- the nano world ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_nano_tail_concepts_share_rises(tmp_path, xs_world):
    """DynamiCS keeps a larger share of tail-concept uids (oracle ``head_tail == "tail"``) than the pool holds
    (= no_filter), averaged over the segments of a nano-xs schedule."""
    from filterbench.harness.recipes import load_recipe
    from filterbench.harness.scales import get_scale

    world = xs_world
    recipe = load_recipe(REPO / "baselines" / "dynamics.yaml")
    pl = plugins()
    pool = Pool(world.pool_dir)
    store = Store(tmp_path / "store")
    (spec,) = recipe.scorers
    scores = run_score(store, pool, pl.scorer_class(spec.name)(**spec.params), plugins=pl, progress=False)
    sampler = pl.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    selection = run_sample(store, sampler, [scores], get_scale("nano-xs").budget(pool.size), plugins=pl)
    counts = np.load(selection.path / "counts.npy")
    oracle = pd.concat([pq.read_table(p, columns=["uid", "head_tail"]).to_pandas()
                        for p in sorted(Path(world.oracle_dir).glob("*.parquet"))]).set_index("uid")
    uids = np.concatenate([pool.read_metadata(s)["uid"] for s in pool.shards])
    tail = (oracle.loc[uids, "head_tail"] == "tail").to_numpy()
    assert tail.any()
    kept_share = float(np.mean([tail[row > 0].mean() for row in counts]))
    print(f"\ntail-concept share: kept {kept_share:.4f}, pool {tail.mean():.4f}")
    assert kept_share > tail.mean(), (kept_share, float(tail.mean()))
