"""Scorer ``nano_oracle``: the nano world's ground truth as a score (the ceiling every filter is compared with).

Card
    Only for the nano world, whose generator knows which pairs are clean.  It reads ``oracle/*.parquet`` beside
    the pool folder (``<world>/oracle`` next to ``<world>/pool``), which no other plugin sees through the pool
    API.  Outputs:
        ``clean``: 1.0 for pairs whose ``noise_type`` is in ``keep`` (default: ``clean``), else 0.
        ``balanced``: a ranking of the clean pairs that a top-k selection turns into per-class quotas
            ``min(n_c, t * n_c ** balance)`` (``n_c``: clean pairs showing object class ``c``; ``balance`` 0 caps
            every class at the same count, 1 keeps the world's class law), each class's pairs taken in
            descending order of the parquet's ``clip_l14_similarity_score``.  The value of the ``r``-th best
            pair of its class (from 0) is ``-(r + 0.5) / n_c ** balance``; pairs that are not clean or show no
            object get ``-1e9``.  Ties between classes break by ascending uid in the samplers.
        ``clean_l14``: the parquet's ``clip_l14_similarity_score`` for the clean pairs and ``-1e9`` for the rest:
            log-weights for a sampler (soft or hard cap) that may draw only ground-truth clean pairs (score
            columns must be finite; a weight of exp(-1e9 / temperature) is exactly 0).
    Recipe ``oracle`` (v5) takes the top 20% of the pool by ``balanced`` with ``balance`` 0.5 (per-class
    quotas ~ sqrt(n_c), best L/14 pairs first); ``clean_l14`` serves capped-sampler ceilings (v4: hard cap
    over it; the measured variants are in oracle.yaml's notes).
    Versions: 1 - ``clean`` only.  2 - adds ``balanced``.  3 - adds ``clean_l14`` (the others unchanged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from filterbench.harness.contract import Params, PoolBatch, Scorer, StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.hookspecs import hookimpl

_NOT_KEPT = -1e9


class NanoOracleScorer(Scorer):
    """Ground-truth cleanliness of the nano world's pairs, and two ways to rank the clean ones."""

    name = "nano_oracle"
    version = 3
    outputs = ("clean", "balanced", "clean_l14")

    class Params(Params):
        keep: tuple[str, ...] = ("clean",)
        balance: float = 0.0

    def fit(self, pool, ctx: StageContext) -> None:
        truth = _read_truth(Path(pool.root).resolve().parent / "oracle")
        l14 = _read_l14_scores(pool)
        missing = set(truth["uid"]) - set(l14)
        if missing:
            raise PluginError(f"scorer 'nano_oracle': uid {sorted(missing)[0]} is in oracle/ but not in the pool")
        clean = np.isin(truth["noise_type"], list(self.params.keep))
        score = np.array([l14[u] for u in truth["uid"]], dtype=np.float64)
        balanced = _balanced_ranking(truth["object_class"], clean, score, self.params.balance)
        clean_l14 = np.where(clean, score, _NOT_KEPT)
        order = np.argsort(truth["uid"])
        np.save(ctx.state_dir / "uids.npy", truth["uid"][order].astype("U32"))
        columns = np.stack([clean[order], balanced[order], clean_l14[order]], axis=1).astype(np.float64)
        np.save(ctx.state_dir / "columns.npy", columns)
        ctx.stat("clean_fraction", float(clean.mean()))

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> np.ndarray:
        uids = np.load(ctx.state_dir / "uids.npy")
        columns = np.load(ctx.state_dir / "columns.npy")
        wanted = np.asarray(batch.uids, dtype="U32")
        where = np.searchsorted(uids, wanted)
        found = (where < len(uids)) & (uids[np.minimum(where, len(uids) - 1)] == wanted)
        if not found.all():
            raise PluginError(f"scorer 'nano_oracle': uid {wanted[~found][0]} of shard {batch.shard} has no "
                              "ground truth in oracle/")
        rows = columns[where].astype(np.float32)
        return {"clean": rows[:, 0], "balanced": rows[:, 1], "clean_l14": rows[:, 2]}


def _read_truth(oracle_dir: Path) -> dict[str, np.ndarray]:
    parts = sorted(oracle_dir.glob("*.parquet"))
    if not parts:
        raise PluginError(f"scorer 'nano_oracle': no ground truth at {oracle_dir} (only nano pools have one)")
    columns = ("uid", "noise_type", "object_class")
    for part in parts:
        missing = [c for c in columns if c not in pq.read_schema(part).names]
        if missing:
            raise PluginError(f"scorer 'nano_oracle': {part} lacks column(s) {missing}")
    tables = [pq.read_table(part, columns=list(columns)) for part in parts]
    return {name: np.concatenate([t.column(name).to_numpy(zero_copy_only=False) for t in tables]).astype(
        object if name != "object_class" else np.int64) for name in columns}


def _read_l14_scores(pool) -> dict[str, float]:
    out: dict[str, float] = {}
    for shard in pool.shards:
        meta = pool.read_metadata(shard, ("clip_l14_similarity_score",))
        out.update(zip(meta["uid"].tolist(), meta["clip_l14_similarity_score"].astype(float).tolist()))
    return out


def _balanced_ranking(classes: np.ndarray, clean: np.ndarray, score: np.ndarray, balance: float) -> np.ndarray:
    """``-(rank_within_class + 0.5) / n_class ** balance`` for clean pairs showing an object, else ``-1e9``."""
    out = np.full(len(classes), _NOT_KEPT)
    eligible = clean & (classes >= 0)
    for cls in np.unique(classes[eligible]):
        rows = np.flatnonzero(eligible & (classes == cls))
        ranked = rows[np.argsort(-score[rows], kind="stable")]
        out[ranked] = -(np.arange(len(ranked)) + 0.5) / len(ranked) ** balance
    return out


@hookimpl
def register_scorers(register):
    register(NanoOracleScorer)
