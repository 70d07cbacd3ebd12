"""DataComp's image-based filter (and its intersection with CLIP L/14 30%) against an independent computation.

The independent side redoes every step of ``baselines/apply_filter.py``'s rule here: caption filter (py3langid
top-1 English, fastText tokens counted with newlines as ``</s>``, > 5 characters), faiss k-means on the
caption-filtered L/14 features with the derived seed, target clusters by argmax inner product with numpy,
assignment by argmax inner product, and the CLIP threshold ``sorted_desc[int(N*0.3)]`` over the whole pool.
"""

from __future__ import annotations

import re
from pathlib import Path

import faiss
import numpy as np
import py3langid
import pyarrow.parquet as pq
import pytest
import torch

from filterbench.harness.contract import Budget
from filterbench.harness.errors import PluginError
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.seeding import derive_int_seed
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.testing import check_scorer, fabricate_pool


DIM = 16
MODULES = ("language", "image_clusters", "chain_sampler", "clip_score", "basic_samplers")
CAPTIONS = ["a photo of a dog on the beach", "dog", "two cats sleeping on a sofa", "un chien sur la plage",
            "a red bicycle\nnear the city", "cat\nsofa", "the geese flew over the snow", "ein Hund am Strand",
            "children with apples", "big", "cats and dogs playing together in the garden", "night sky"]


def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=tuple((m, f"filterbench.plugins.{m}") for m in MODULES))


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    rows = 240
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(rows)]
    return fabricate_pool(tmp_path_factory.mktemp("ic") / "pool", rows=rows, shards=2, texts=texts,
                          images=False, feature_sets={"l14": DIM})


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ict") / "targets.npy"
    np.save(path, np.random.default_rng(7).standard_normal((6, DIM)).astype(np.float32))
    return path


def identifier():
    """py3langid's identifier (bundled model, normalised probabilities), shared with the plugin (one load)."""
    from filterbench.plugins.language import get_detector

    ident = get_detector("langid", None).identifier
    assert isinstance(ident, py3langid.langid.LanguageIdentifier)
    return ident


def caption_filter(texts) -> np.ndarray:
    """DataComp's caption_filter: English, more than one fastText token, more than five characters."""
    def tokens(t: str) -> int:
        return len([w for w in re.split(r"[ \t\r\v\f\x00]", t.replace("\n", " </s> ")) if w])
    return np.array([identifier().classify(t)[0] == "en" and tokens(t) > 1 and len(t) > 5 for t in texts])


def pool_columns(pool: Path) -> dict[str, np.ndarray]:
    p = Pool(pool)
    feats = np.concatenate([p.read_features(s, ("l14_img",))["l14_img"] for s in p.shards])
    tables = [pq.read_table(s.parquet).to_pydict() for s in p.shards]
    text = [v for t in tables for v in t["text"]]
    clip = np.concatenate([np.array(t["clip_l14_similarity_score"], np.float32) for t in tables])
    return {"features": feats, "text": text, "clip": clip}


def independent_keep(cols: dict, centroids: np.ndarray, targets: np.ndarray) -> np.ndarray:
    hit = np.unique(np.argmax(targets.astype(np.float64) @ centroids.T.astype(np.float64), axis=1))
    labels = np.argmax(cols["features"].astype(np.float64) @ centroids.T.astype(np.float64), axis=1)
    return caption_filter(cols["text"]) & np.isin(labels, hit)


def selection(pool: Path, tmp: Path, scorers: list, sampler) -> tuple[np.ndarray, list]:
    store, pl = Store(tmp / "store"), plugins()
    artifacts = [run_score(store, Pool(pool), s, seed=0, workers=1, plugins=pl, progress=False)
                 for s in scorers]
    n = Pool(pool).size
    chosen = run_sample(store, sampler, artifacts, Budget(n, 1, n), seed=0, plugins=pl)
    return np.load(chosen.path / "counts.npy").astype(bool), artifacts


def test_image_based_equals_datacomp_rule(pool, targets, tmp_path):
    pl = plugins()
    scorer = pl.scorer_class("image_clusters")(target=str(targets), clusters=6, min_points_per_cluster=1,
                                                niter=10)
    got, (artifact,) = selection(pool, tmp_path, [scorer],
                                 pl.sampler_class("threshold")(column="image_clusters.keep", threshold=0.5))
    cols = pool_columns(pool)
    # k-means redone here: DataComp trains on the caption-filtered features, L2, no subsampling
    train = np.ascontiguousarray(cols["features"][caption_filter(cols["text"])])
    kmeans = faiss.Kmeans(DIM, 6, niter=10, seed=derive_int_seed(0, "fit", "image_clusters", "kmeans"),
                          max_points_per_centroid=len(train), min_points_per_centroid=1)
    kmeans.train(train)
    centroids = np.load(artifact.path / "fit/centroids.npy")
    np.testing.assert_allclose(centroids, kmeans.centroids, rtol=1e-5, atol=1e-6)
    expected = independent_keep(cols, centroids, np.load(targets))
    assert 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(got, expected)
    assert artifact.manifest["fit_stats"]["train_points"] == len(train)


def test_intersection_with_clip_score_l14_top30(pool, targets, tmp_path):
    """The CLIP threshold comes from the whole pool first (DataComp's get_threshold), then intersects."""
    pl = plugins()
    centroids = np.random.default_rng(5).standard_normal((5, DIM)).astype(np.float32)
    torch.save(centroids, tmp_path / "centroids.pt")  # DataComp's centroids: torch-saved numpy arrays
    centroid_file = str(tmp_path / "centroids.pt")
    clusters = pl.scorer_class("image_clusters")(target=str(targets), centroids=centroid_file)
    scorers = [pl.scorer_class("clip_score")(model="l14", source="metadata"), clusters]
    steps = [{"column": "clip_score.score", "fraction": 0.3, "rank_among": "pool", "rule": "datacomp"},
             {"column": "image_clusters.keep", "threshold": 0.5}]
    got, _ = selection(pool, tmp_path, scorers, pl.sampler_class("chain")(steps=steps))
    cols = pool_columns(pool)
    threshold = -np.sort(-cols["clip"])[int(len(cols["clip"]) * 0.3)]
    expected = (cols["clip"] >= threshold) & independent_keep(cols, centroids, np.load(targets))
    assert 0 < expected.sum()
    np.testing.assert_array_equal(got, expected)


def test_conformance(pool, targets, tmp_path):
    scorer = plugins().scorer_class("image_clusters")(target=str(targets), clusters=4, caption_filter=False)
    artifact = check_scorer(scorer, tmp_path, pool=pool, plugins=plugins())
    assert artifact.manifest["columns"] == ["keep", "in_target", "caption_ok", "cluster", "similarity"]


def test_cluster_count_scales_down_with_the_training_set(pool, targets, tmp_path):
    pl = plugins()
    scorer = pl.scorer_class("image_clusters")(target=str(targets), min_points_per_cluster=20,
                                                train_fraction=0.5, caption_filter=False, niter=2)
    artifact = run_score(Store(tmp_path), Pool(pool), scorer, plugins=pl, progress=False)
    stats = artifact.manifest["fit_stats"]
    assert stats["train_points"] == 120 and stats["clusters"] == 120 // 20  # not DataComp's 100,000
    with pytest.raises(PluginError, match="too few"):
        too_few = pl.scorer_class("image_clusters")(target=str(targets), min_points_per_cluster=10_000,
                                                    caption_filter=False)
        run_score(Store(tmp_path / "b"), Pool(pool), too_few, plugins=pl, progress=False)
