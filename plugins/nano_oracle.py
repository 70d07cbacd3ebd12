"""Scorer ``nano_oracle``: the nano world's ground truth as a score (the ceiling every filter is compared with).

Card
    Only for the nano world, whose generator knows which pairs are clean.  It reads ``oracle/*.parquet`` beside
    the pool folder (``<world>/oracle`` next to ``<world>/pool``), which no other plugin sees through the pool
    API, and outputs ``clean`` = 1.0 for pairs whose ``noise_type`` is in ``keep`` (default: ``clean``), else 0.
    Recipe ``oracle`` keeps exactly those (``threshold`` 0.5 on ``nano_oracle.clean``).
    Versions: 1 - first release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from filterbench.harness.contract import Params, PoolBatch, Scorer, StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.hookspecs import hookimpl


class NanoOracleScorer(Scorer):
    """1.0 for ground-truth clean pairs of the nano world, 0.0 otherwise."""

    name = "nano_oracle"
    version = 1
    outputs = ("clean",)

    class Params(Params):
        keep: tuple[str, ...] = ("clean",)

    def fit(self, pool, ctx: StageContext) -> None:
        oracle_dir = Path(pool.root).resolve().parent / "oracle"
        parts = sorted(oracle_dir.glob("*.parquet"))
        if not parts:
            raise PluginError(f"scorer 'nano_oracle': no ground truth at {oracle_dir} (only nano pools have one)")
        uids, kinds = [], []
        for part in parts:
            table = pq.read_table(part, columns=["uid", "noise_type"])
            uids.extend(table.column("uid").to_pylist())
            kinds.extend(table.column("noise_type").to_pylist())
        clean = np.isin(np.array(kinds, dtype=object), list(self.params.keep))
        np.save(ctx.state_dir / "clean_uids.npy", np.array(sorted(np.array(uids)[clean]), dtype="U32"))
        ctx.stat("clean_fraction", float(clean.mean()))

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> np.ndarray:
        clean = np.load(ctx.state_dir / "clean_uids.npy")
        return np.isin(np.asarray(batch.uids, dtype="U32"), clean).astype(np.float32)


@hookimpl
def register_scorers(register):
    register(NanoOracleScorer)
