"""DynamiCS: scorer ``dynamics_clusters`` (deduplicated spherical k-means) and schedule sampler ``dynamics``.

Card
    Paper: Liang and Larson, "DynamiCS" (arXiv 2604.27932, ECCV 2026).  The paper text was not available; the
        rule below is pinned down from the authors' code.
    Reference: github.com/MingliangLiang3/DynamiCS ``tests/DynamiCS/`` (``faiss_cluster_npy.py``,
        ``post_clustering_refinement.py``, ``search_cluster_index.py``, ``cluster_scaling.py``) and the
        training-time filter in ``src/open_clip_train/data.py`` (``--sampling-probabilities-file``); read and
        rewritten, no code copied.
    Scorer ``dynamics_clusters`` (fit once, cached in the score artifact's ``fit/``):
        1. training sample: up to ``sample_per_shard`` rows of every metadata shard (uniform, without
           replacement, from the harness's fit generator), L2-normalised, then at most ``clusters_used *
           max_points_per_centroid`` of them (seeded subsample, so faiss never subsamples on its own).
        2. spherical k-means (faiss, ``niter``, seed ``derive_int_seed(seed, "fit", name, "kmeans")``) with
           ``clusters_used = min(clusters, training rows // min_points_per_cluster)``: DataComp-scale pools
           keep the paper's 50,000, nano pools get proportionally fewer (the count is in ``fit_stats``).
        3. refinement = greedy de-duplication: centroids scanned in faiss's index order; a centroid whose
           cosine to an already kept centroid is ``>= refine_threshold`` (0.70, compared in float32 as the
           reference's faiss search returns it) is dropped; none is modified; kept ones are renumbered.
        Score (per shard): every row (L2-normalised) goes to its max-inner-product kept centroid.
        Columns: ``cluster`` (kept-centroid id as float32, exact below 2**24), ``similarity`` (its cosine).
    Sampler ``dynamics`` (mode ``schedule``): over the pool's cluster ids, n_c = members of cluster c,
        N = pool rows, T = round(budget_fraction * N), S = sum_c n_c**alpha and, as ``cluster_scaling.py``,
        r_c = round(T * n_c**alpha / S), p_c = round(r_c / n_c, 6) (numpy's half-to-even rounding; p_c > 1
        means always kept, p_c = 0 when r_c rounds to 0 means never kept).  Row e of the schedule is a fresh
        0/1 keep mask, keep_i = u_i < p_c(i), u from a generator derived from (the sampler's generator,
        "segment", e): reproducible per seed, independent across segments, row e independent of the number
        of segments.
        Realised fraction: E[kept] = sum_c min(n_c, r_c) < T, because p is clipped at 1 and the excess of
        small clusters is not redistributed (as in the reference).  ``budget_mode: exact`` (a deviation)
        solves sum_c min(n_c, lambda * n_c**alpha) = T (water-filling), gives cluster c the quota
        x_c = min(n_c, lambda * n_c**alpha), rounds the quotas to integers summing to T by systematic sampling
        of their fractional parts (unbiased) and keeps that many uniformly drawn members of each cluster:
        every segment keeps exactly T uids and uid i is kept with probability exactly x_c / n_c.
    Training: row e is what the trainer feeds in segment e; it deals segment e's share of the samples-seen
        budget from that row's kept uids, trimming at random when they exceed the share and repeating them
        when they fall short (the reference would start another Bernoulli pass; see docs/methods/dynamics.md).
    Deviations: seeded training sample and per-segment seeds (the reference is unseeded); one draw per
        training segment instead of one per raw pass of the loader; ``clusters`` capped on small pools; the
        exact-budget mode.  The image-only embedding is any npz feature array (``feature``; nano:
        ``dino_img``, the DINOv2-base CLS role).
    faiss: CPU everywhere, GPU where a faiss GPU build sees a GPU (``gpu: auto``; ``never`` / ``require``).
    Checks: tests/plugins/test_dynamics.py (formula, rounding and p > 1; dedup incl. order dependence;
        assignment vs brute force; segment draws; realised fractions; exact budget; nano tail share).
    Versions: 1 - first release.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pydantic

from filterbench.harness.contract import (Budget, Needs, Params, PoolBatch, Sampler, Scorer, ScoreTable,
                                          StageContext)
from filterbench.harness.errors import ParamsError, PluginError
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.seeding import derive_int_seed, derive_rng
from filterbench.plugins._faiss import (flat_ip_index, gpu_available, max_inner_product,
                                        to_device, train_kmeans)

log = logging.getLogger("filterbench.plugin.dynamics")

#: npz key of the image-only embedding on the nano world (the DINOv2-base role)
NANO_FEATURE = "dino_img"


# -- clustering ----------------------------------------------------------------------------------------------
def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (float32; all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def refine_centroids(centroids: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Indices of the centroids kept by the reference's greedy de-duplication, in scan (index) order.

    A centroid is dropped when its inner product with an already kept centroid is ``>= threshold`` (float32,
    as a faiss ``IndexFlatIP`` search returns it).  ``centroids`` must be unit-norm.  Blocks of ``block``
    centroids are compared with all earlier kept ones by one matrix product, then scanned in order.
    """
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    thr = np.float32(threshold)
    kept_vectors = np.empty_like(c)
    kept: list[int] = []
    for start in range(0, len(c), block):
        chunk = c[start:start + block]
        alive = np.ones(len(chunk), dtype=bool)
        if kept:
            alive = (chunk @ kept_vectors[:len(kept)].T).max(axis=1) < thr
        within = chunk @ chunk.T
        local: list[int] = []
        for i in np.flatnonzero(alive):
            if not local or not (within[i, local] >= thr).any():
                local.append(int(i))
        kept_vectors[len(kept):len(kept) + len(local)] = chunk[local]
        kept.extend(start + i for i in local)
    return np.asarray(kept, dtype=np.int64)


def _use_gpu(choice: str) -> bool:
    if choice == "never":
        return False
    available = gpu_available()
    if choice == "require" and not available:
        raise ParamsError("dynamics_clusters: gpu=require, but no faiss GPU build sees a GPU")
    return available


class DynamicsClustersScorer(Scorer):
    """DynamiCS clusters: deduplicated spherical k-means of an image-only embedding; nearest kept centroid."""

    name = "dynamics_clusters"
    version = 1
    outputs = ("cluster", "similarity")

    class Params(Params):
        feature: str = NANO_FEATURE
        clusters: int = pydantic.Field(default=50_000, ge=1)
        min_points_per_cluster: int = pydantic.Field(default=39, ge=1)
        niter: int = pydantic.Field(default=10, ge=1)
        sample_per_shard: int = pydantic.Field(default=250_000, ge=1)
        max_points_per_centroid: int = pydantic.Field(default=1000, ge=1)
        refine_threshold: float | None = pydantic.Field(default=0.70, ge=-1.0)
        gpu: Literal["auto", "never", "require"] = "auto"

    @property
    def needs(self) -> Needs:
        return Needs(features=(self.params.feature,))

    # -- fit ------------------------------------------------------------------------------------------
    def fit(self, pool, ctx: StageContext) -> None:
        p = self.params
        use_gpu = _use_gpu(p.gpu)
        points = self._training_sample(pool, ctx.rng)
        k = min(p.clusters, len(points) // p.min_points_per_cluster)
        if k < 1:
            raise PluginError(f"dynamics_clusters: {len(points)} training rows are too few for k-means "
                              f"(min_points_per_cluster={p.min_points_per_cluster})")
        cap = k * p.max_points_per_centroid
        if len(points) > cap:
            points = points[np.sort(ctx.rng.choice(len(points), size=cap, replace=False))]
        seed = derive_int_seed(ctx.seed, "fit", self.name, "kmeans")
        centroids = l2_normalise(train_kmeans(points, k, p.niter, spherical=True, seed=seed, gpu=use_gpu))
        kept = np.arange(k) if p.refine_threshold is None else refine_centroids(centroids, p.refine_threshold)
        np.save(ctx.state_dir / "centroids.npy", centroids[kept])
        np.save(ctx.state_dir / "kept.npy", kept)
        record = {"clusters_trained": k, "clusters_kept": len(kept), "train_points": len(points),
                  "kmeans_seed": seed, "gpu": use_gpu}
        (ctx.state_dir / "fit.json").write_text(json.dumps(record, indent=1))
        for key in ("clusters_trained", "clusters_kept", "train_points"):
            ctx.stat(key, record[key])
        log.info("dynamics_clusters: %d of %d centroids kept at threshold %s (%d training rows)",
                 len(kept), k, p.refine_threshold, len(points))

    def _training_sample(self, pool, rng: np.random.Generator) -> np.ndarray:
        """Up to ``sample_per_shard`` uniform rows of each shard, L2-normalised, zero rows left out."""
        key, parts = self.params.feature, []
        for shard in pool.shards:
            take = min(self.params.sample_per_shard, shard.rows)
            rows = np.sort(rng.choice(shard.rows, size=take, replace=False))
            parts.append(l2_normalise(pool.read_features(shard, (key,))[key][rows]))
        points = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
        return np.ascontiguousarray(points[np.linalg.norm(points, axis=1) > 0])

    # -- score ----------------------------------------------------------------------------------------
    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_loaded_from", None) == ctx.state_dir:
            return
        index = flat_ip_index(np.load(ctx.state_dir / "centroids.npy"))
        self._index = to_device(index) if _use_gpu(self.params.gpu) else index
        self._loaded_from = ctx.state_dir

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        rows = l2_normalise(batch.features[self.params.feature])
        similarity, cluster = max_inner_product(self._index, rows)
        return {"cluster": cluster.astype(np.float32), "similarity": similarity}


# -- probabilities -------------------------------------------------------------------------------------------
def official_probabilities(sizes: np.ndarray, alpha: float, target: int) -> np.ndarray:
    """``cluster_scaling.py``'s p_c = round(round(T n_c^a / S) / n_c, 6) (float64; may exceed 1 or be 0)."""
    n = np.asarray(sizes, dtype=np.float64)
    scaled = n ** alpha
    resampled = np.round(scaled / scaled.sum() * target)
    return np.round(resampled / n, 6)


def water_level(sizes: np.ndarray, alpha: float, target: float) -> float:
    """lambda with sum_c min(n_c, lambda n_c^alpha) = target (inf when target >= sum n_c)."""
    n = np.sort(np.asarray(sizes, dtype=np.float64))
    if target >= n.sum():
        return float("inf")
    scaled = n ** alpha
    full = np.concatenate([[0.0], np.cumsum(n)[:-1]])  # members of the k smallest clusters (saturated)
    rest = scaled.sum() - np.concatenate([[0.0], np.cumsum(scaled)[:-1]])  # sum n^a over the others
    saturation = n ** (1.0 - alpha)  # lambda at which cluster c is kept whole
    reached = full + saturation * rest  # g(saturation_k), non-decreasing in k
    k = int(np.searchsorted(reached, target, side="left"))
    return float((target - full[k]) / rest[k])


def exact_quotas(sizes: np.ndarray, alpha: float, target: int) -> np.ndarray:
    """x_c = min(n_c, lambda n_c^alpha): expected members kept per cluster, summing to ``target``."""
    n = np.asarray(sizes, dtype=np.float64)
    level = water_level(n, alpha, target)
    return n.copy() if np.isinf(level) else np.minimum(n, level * n ** alpha)


def expected_kept(sizes: np.ndarray, probabilities: np.ndarray) -> float:
    """Expected uids kept by one Bernoulli draw: sum_c n_c min(1, p_c)."""
    return float(np.sum(np.asarray(sizes) * np.minimum(1.0, probabilities)))


def realised_fractions(counts: np.ndarray) -> np.ndarray:
    """Kept fraction of the pool per segment (row) of a schedule (below ``budget_fraction`` when official)."""
    counts = np.asarray(counts)
    return counts.sum(axis=1, dtype=np.int64) / max(1, counts.shape[1])


# -- draws ---------------------------------------------------------------------------------------------------
def draw_official(cluster_of: np.ndarray, probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The reference loader's filter: keep uid i iff p_i >= 1 or u_i < p_i (u uniform on [0, 1))."""
    return rng.random(len(cluster_of)) < probabilities[cluster_of]


def round_systematic(quotas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers with E[result_c] = quotas_c and sum = round(sum quotas): floors plus one for the clusters a
    systematic sample (random start, clusters in random order) picks with probability = fractional part."""
    base = np.floor(quotas)
    frac = quotas - base
    extra = round(frac.sum())
    out = base.astype(np.int64)
    if extra == 0:
        return out
    order = rng.permutation(len(quotas))
    cum = np.cumsum(frac[order])
    cum *= extra / cum[-1]
    cum[-1] = extra
    start = 1.0 - rng.random()  # (0, 1]: exactly ``extra`` grid points start + j - 1 fall in (0, extra]
    hits = np.floor(cum - start) - np.floor(np.concatenate([[0.0], cum[:-1]]) - start)
    out[order] += hits.astype(np.int64)
    return out


def draw_exact(cluster_of: np.ndarray, quotas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exactly sum(quotas) uids: per cluster a uniform random subset of its systematically rounded quota."""
    take = round_systematic(quotas, rng)
    order = np.lexsort((rng.random(len(cluster_of)), cluster_of))  # by cluster, random inside each
    sizes = np.bincount(cluster_of, minlength=len(quotas))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    keep = np.zeros(len(cluster_of), dtype=bool)
    keep[order] = rank < np.repeat(take, sizes)
    return keep


@dataclass(frozen=True)
class ClusterTable:
    """Dense cluster index per uid (pool order) and the cluster sizes n_c."""

    cluster_of: np.ndarray
    sizes: np.ndarray


def cluster_table(values: np.ndarray, column: str = "cluster") -> ClusterTable:
    """Each distinct value is one cluster; non-finite values fail, non-integral ones are logged."""
    values = np.asarray(values)
    if values.size and not np.isfinite(values).all():
        raise PluginError(f"dynamics: column {column!r} holds non-finite values; expected cluster ids")
    if values.size and not np.array_equal(values, np.round(values)):
        log.warning("dynamics: column %r holds non-integral values; is it a cluster-id column?", column)
    _, cluster_of, sizes = np.unique(values, return_inverse=True, return_counts=True)
    return ClusterTable(cluster_of.reshape(-1).astype(np.int64), sizes.astype(np.int64))


class DynamicsSampler(Sampler):
    """DynamiCS: one fresh keep mask per training segment, cluster-scaled probabilities from n_c ** alpha."""

    name = "dynamics"
    version = 1
    mode = "schedule"

    class Params(Params):
        column: str = "dynamics_clusters.cluster"
        alpha: float = pydantic.Field(default=0.2, ge=0.0, le=1.0)
        budget_fraction: float = pydantic.Field(default=0.5, gt=0.0, le=1.0)
        budget_mode: Literal["official", "exact"] = "official"

    def target(self, pool_size: int) -> int:
        """T = round(budget_fraction * N), the nominal uids kept per segment."""
        return round(self.params.budget_fraction * pool_size)

    def cluster_probabilities(self, table: ClusterTable) -> np.ndarray:
        """p_c per cluster: the reference's rounded values (official) or x_c / n_c (exact)."""
        p, target = self.params, self.target(int(table.sizes.sum()))
        if p.budget_mode == "official":
            return official_probabilities(table.sizes, p.alpha, target)
        return exact_quotas(table.sizes, p.alpha, target) / table.sizes

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Per-uid keep probability p_i = p_{c(i)} in pool order (the reference's probability file)."""
        table = cluster_table(values, self.params.column)
        return self.cluster_probabilities(table)[table.cluster_of]

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        table = cluster_table(scores.column(self.params.column), self.params.column)
        root = int(rng.integers(0, 2 ** 63))
        if self.params.budget_mode == "official":
            p = self.cluster_probabilities(table)
            self._log_plan(table, p)
            draw = lambda gen: draw_official(table.cluster_of, p, gen)
        else:
            quotas = exact_quotas(table.sizes, self.params.alpha, self.target(len(table.cluster_of)))
            draw = lambda gen: draw_exact(table.cluster_of, quotas, gen)
        rows = [draw(derive_rng(root, "dynamics", "segment", e)) for e in range(budget.segments)]
        return np.stack(rows).astype(np.uint8) if rows else np.zeros((0, len(table.cluster_of)), np.uint8)

    def _log_plan(self, table: ClusterTable, p: np.ndarray) -> None:
        n = int(table.sizes.sum())
        expected = expected_kept(table.sizes, p)
        log.info("dynamics: %d clusters, T=%d, expected kept per segment %.0f (%.4f of the pool, "
                 "nominal %.4f); %d clusters kept whole", len(p), self.target(n), expected,
                 expected / max(1, n), self.params.budget_fraction, int(np.count_nonzero(p >= 1)))
        if (p == 0).any():
            log.warning("dynamics: %d clusters have r_c rounded to 0 and are never kept", int(np.sum(p == 0)))


@hookimpl
def register_scorers(register):
    register(DynamicsClustersScorer)


@hookimpl
def register_samplers(register):
    register(DynamicsSampler)
