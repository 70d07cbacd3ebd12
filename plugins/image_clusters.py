"""Scorer ``image_clusters``: DataComp's image-based filter (k-means clusters hit by a target set).

Card
    Paper: Gadre et al. 2023, DataComp, §3.4 and App. C ("Image-based filtering"; with "∩ CLIP score (L/14
        30%)" DataComp's best medium baseline and the recipe of DataComp-1B).
    Reference: mlfoundations/datacomp ``baselines/image_based_clustering.py`` (``train_kmeans``) and
        ``baselines/apply_filter.py`` (``load_uids_with_image_filter``, ``image_filter_helper``,
        ``get_centroid_ids_gpu``, ``caption_filter``).
    Fit (once, cached in ``fit/``):
        1. centroids: either loaded (``centroids``: a file, or ``datacomp_centroids:<scale>`` for DataComp's
           ``<scale>_centroids_l14.pt`` in ``$FILTERBENCH_DATACOMP_ASSETS``/``~/.cache/datacomp``), or trained
           with faiss k-means on the pool's ``<model>_img`` features: a seeded sample of ``train_fraction`` of
           the pool rows (drawn without replacement from the fit generator; DataComp uses all rows at
           small/medium, 30% at large, 3% at xlarge), caption-filtered when ``caption_filter`` is on (as
           DataComp), ``niter`` iterations, L2 objective (DataComp) or ``spherical``, no faiss subsampling,
           seed derived from the run seed.  ``clusters`` is DataComp's 100,000, capped at ``training points //
           min_points_per_cluster`` so that small pools (nano) get proportionally fewer clusters; the count
           used is in ``fit_stats``.
        2. target clusters: every target image embedding (``target``, default ``imagenet_train``: the pool's
           own ``targets/imagenet_train.npz`` when shipped, as on nano, else DataComp's ImageNet-1k train L/14
           features; see ``filterbench.harness.targets``) goes to its centroid by **max inner product** with
           the raw (un-normalised) centroids, as DataComp does although its k-means minimised L2; the distinct
           ids are the target clusters.
    Score (per shard): each pool image goes to its max-inner-product centroid (faiss flat IP index, on every
        GPU when a faiss GPU build sees one).  ``keep`` = in a target cluster AND (when ``caption_filter``)
        the caption passes DataComp's image-based caption filter: top-1 language English
        (``language_id.match``), more than one fastText token (``min_tokens`` 2) and more than five
        characters (``min_chars`` 6).
    Outputs: ``keep``, ``in_target``, ``caption_ok`` (1.0 when the filter is off), ``cluster`` (centroid id),
        ``similarity`` (inner product with it).
    Recipes: ``baselines/image_based.yaml``; ``baselines/image_based_clip_score_l14_top30.yaml`` (the CLIP
        threshold from the whole pool first, through the ``chain`` sampler).
    Checks: tests/plugins/test_image_clusters.py recomputes k-means, target clusters, assignment and the
        caption filter independently and compares the kept uids.
    Versions: 1 - first release.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pydantic

from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, ScoreInput, StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.seeding import derive_int_seed
from filterbench.harness.targets import resolve_pinned_target, TargetError, register_target_set, resolve_target
from filterbench.plugins._faiss import flat_ip_index, max_inner_product, to_device, train_kmeans
from filterbench.plugins.language import captions, fasttext_token_count, get_detector


def caption_mask(texts: list[str], english: np.ndarray, min_tokens: int, min_chars: int) -> np.ndarray:
    """DataComp's image-based caption filter: English, enough fastText tokens, enough characters."""
    tokens = np.array([fasttext_token_count(t) for t in texts], dtype=np.int64)
    chars = np.array([len(t) for t in texts], dtype=np.int64)
    return english & (tokens >= min_tokens) & (chars >= min_chars)


class ImageClustersScorer(Scorer):
    """Pool images in k-means clusters that some target image falls into (DataComp's image-based filter)."""

    name = "image_clusters"
    version = 1
    outputs = ("keep", "in_target", "caption_ok", "cluster", "similarity")

    class Params(Params):
        model: str = "l14"
        target: str = "imagenet_train"
        target_sha256: str | None = None
        centroids: str | None = None
        clusters: int = pydantic.Field(default=100_000, ge=1)
        min_points_per_cluster: int = pydantic.Field(default=32, ge=1)
        niter: int = pydantic.Field(default=20, ge=1)
        spherical: bool = False
        train_fraction: float = pydantic.Field(default=1.0, gt=0.0, le=1.0)
        caption_filter: bool = True
        min_tokens: int = 2
        min_chars: int = 6
        lid_backend: Literal["langid", "fasttext"] = "langid"
        lid_model: str | None = None
        language: str = "en"

    @property
    def needs(self) -> Needs:
        text = ("text",) if self.params.caption_filter else ()
        return Needs(metadata=text, features=(f"{self.params.model}_img",))

    def required_scores(self) -> tuple[ScoreInput, ...]:
        if not self.params.caption_filter:
            return ()
        return (ScoreInput("language_id", {"backend": self.params.lid_backend, "model": self.params.lid_model,
                                           "language": self.params.language}),)

    # -- fit ------------------------------------------------------------------------------------------
    def fit(self, pool, ctx: StageContext) -> None:
        p = self.params
        target = resolve_pinned_target(p.target, f"{p.model}_img", pool.root, p.target_sha256, "image_clusters")
        if p.centroids is not None:
            centroids, trained_on = resolve_target(p.centroids).embeddings, 0
        else:
            points = self._training_points(pool, ctx)
            clusters = min(p.clusters, len(points) // p.min_points_per_cluster)
            if clusters < 1:
                raise PluginError(f"image_clusters: {len(points)} training points are too few for k-means "
                                  f"(min_points_per_cluster={p.min_points_per_cluster})")
            seed = derive_int_seed(ctx.seed, "fit", self.name, "kmeans")
            centroids, trained_on = train_kmeans(points, clusters, p.niter, p.spherical, seed), len(points)
        if centroids.shape[1] != target.embeddings.shape[1]:
            raise PluginError(f"image_clusters: centroids have dim {centroids.shape[1]}, target {p.target!r} "
                              f"has dim {target.embeddings.shape[1]} (same model needed)")
        _, nearest = max_inner_product(to_device(flat_ip_index(centroids)), target.embeddings)
        hit = np.unique(nearest)
        np.save(ctx.state_dir / "centroids.npy", centroids)
        np.save(ctx.state_dir / "target_clusters.npy", hit)
        record = {"target": {"spec": p.target, **target.describe()}, "centroids": p.centroids,
                  "clusters": len(centroids), "train_points": int(trained_on),
                  "target_clusters": len(hit)}
        (ctx.state_dir / "fit.json").write_text(json.dumps(record, indent=1))
        for key in ("clusters", "train_points", "target_clusters"):
            ctx.stat(key, record[key])

    def _training_points(self, pool, ctx: StageContext) -> np.ndarray:
        """A seeded sample of pool rows (``train_fraction``), caption-filtered when asked, as float32."""
        p, key = self.params, f"{self.params.model}_img"
        total = pool.size
        chosen = np.arange(total) if p.train_fraction >= 1.0 else \
            np.sort(ctx.rng.choice(total, size=max(1, round(p.train_fraction * total)), replace=False))
        parts = []
        for shard in pool.shards:
            rows = chosen[(chosen >= shard.offset) & (chosen < shard.offset + shard.rows)] - shard.offset
            if not len(rows):
                continue
            features = pool.read_features(shard, (key,))[key][rows]
            if p.caption_filter:
                shard_texts = captions(pool.read_metadata(shard, ("text",))["text"])
                texts = [shard_texts[r] for r in rows]
                _, english = self._english(texts)
                features = features[caption_mask(texts, english, p.min_tokens, p.min_chars)]
            parts.append(features)
        return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    def _english(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        detector = get_detector(self.params.lid_backend, self.params.lid_model)
        top, _ = detector.detect(texts, self.params.language)
        return top, np.array([t == self.params.language for t in top], dtype=bool)

    # -- score ----------------------------------------------------------------------------------------
    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_loaded_from", None) == ctx.state_dir:
            return
        centroids = np.load(ctx.state_dir / "centroids.npy")
        self._in_target = np.zeros(len(centroids), dtype=bool)
        self._in_target[np.load(ctx.state_dir / "target_clusters.npy")] = True
        self._index, self._loaded_from = to_device(flat_ip_index(centroids)), ctx.state_dir

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        p = self.params
        similarity, cluster = max_inner_product(self._index, batch.features[f"{p.model}_img"])
        in_target = self._in_target[cluster]
        if p.caption_filter:
            english = batch.scores["language_id.match"] >= 0.5
            caption_ok = caption_mask(captions(batch.metadata["text"]), english, p.min_tokens, p.min_chars)
        else:
            caption_ok = np.ones(len(batch), dtype=bool)
        return {"keep": (in_target & caption_ok).astype(np.float32),
                "in_target": in_target.astype(np.float32), "caption_ok": caption_ok.astype(np.float32),
                "cluster": cluster.astype(np.float32), "similarity": similarity}


def _datacomp_centroids(scale: str, feature: str) -> list[Path]:
    """DataComp's precomputed pool centroids, ``datacomp_centroids:<scale>``."""
    if scale not in ("small", "medium", "large", "xlarge"):
        raise TargetError(f"datacomp_centroids:{scale}: scale must be small, medium, large or xlarge")
    root = Path(os.environ.get("FILTERBENCH_DATACOMP_ASSETS", "~/.cache/datacomp")).expanduser()
    path = root / f"{scale}_centroids_l14.pt"
    if not path.is_file():
        raise TargetError(f"{path} not found (DataComp's baseline assets; set FILTERBENCH_DATACOMP_ASSETS)")
    return [path]


register_target_set("datacomp_centroids", _datacomp_centroids)


@hookimpl
def register_scorers(register):
    register(ImageClustersScorer)
