"""The trivial scorer behind samplers that read no score (``all``, ``random_fraction``): it only carries uids."""

from __future__ import annotations

import numpy as np

from filterbench.harness.contract import PoolBatch, Scorer, StageContext


class UidOnlyScorer(Scorer):
    """Outputs a constant column so that a selection artifact can be tied to a pool; not registered."""

    name = "uids"
    version = 1
    outputs = ("constant",)

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> np.ndarray:
        return np.zeros(len(batch), dtype=np.float32)
