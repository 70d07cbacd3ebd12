"""Subset-mode samplers: ``all``, ``threshold``, ``top_fraction``, ``random_fraction``.

Card
    Reference: mlfoundations/datacomp ``baselines/apply_filter.py`` (``load_uids``, ``get_threshold``,
        ``load_uids_with_clip_score``).  A DataComp CLIP-score baseline is the ``clip_score`` scorer plus one of
        these samplers.
    ``top_fraction`` keeps exactly ``floor(fraction * N)`` uids: the highest scores, ties broken by ascending
        uid (128-bit value).  DataComp's own rule (``t = sorted_desc[int(N*f)]``, keep ``score >= t``) keeps one
        uid more plus any ties at the boundary; ``rule=datacomp`` reproduces it exactly.  The exact rule runs
        as a streaming radix select over chunks of the column the sample stage memory-maps, so no pass
        needs every score in memory at once (beside the uint32 counts it returns).
    Non-finite scores (NaN) are never kept.
    Versions: 1 - first release.
"""

from __future__ import annotations

from typing import Iterable, Literal

import numpy as np
import pydantic

from filterbench.harness.contract import Budget, Cut, Params, Sampler, ScoreTable
from filterbench.harness.cut import BINS, order_keys, radix_select
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.uids import UID_DTYPE


class AllSampler(Sampler):
    """Keep every uid (DataComp's ``no_filter``)."""

    name = "all"
    mode = "subset"

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        return np.ones(budget.pool_size, dtype=np.uint32)


class ThresholdSampler(Sampler):
    """Keep uids whose score is ``>= threshold`` (DataComp's ``--threshold``)."""

    name = "threshold"
    mode = "subset"

    class Params(Params):
        threshold: float
        column: str | None = None

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        values = scores.column(self.params.column)
        return (values >= self.params.threshold).astype(np.uint32)  # NaN compares False: never kept

    def cut(self, budget: Budget) -> Cut:
        return Cut(self.params.column, "threshold", self.params.threshold)


def kth_largest_key(chunks: Iterable[np.ndarray] | list, k: int) -> tuple[int, int]:
    """The order key of the k-th largest score (NaN ranks lowest) and how many scores are strictly above it.

    The radix select of the sample stage's cuts (:func:`filterbench.harness.cut.radix_select`) over in-memory
    chunks: two passes of 16-bit histograms, memory O(65536 + chunk), so a memory-mapped column of any length
    is read chunk by chunk.  ``chunks`` must be re-iterable (a list).
    """
    high, rows = np.zeros(BINS, dtype=np.int64), 0
    for chunk in chunks:
        high += np.bincount(order_keys(chunk) >> 16, minlength=BINS)
        rows += len(chunk)

    def lows(bins: tuple[int, ...]) -> dict[int, np.ndarray]:
        counts = {b: np.zeros(BINS, dtype=np.int64) for b in bins}
        for chunk in chunks:
            keys = order_keys(chunk)
            for b in bins:
                counts[b] += np.bincount(keys[(keys >> 16) == b] & 0xFFFF, minlength=BINS)
        return counts

    [(key, at_or_below)] = radix_select(high, 0, lows, [rows - k])
    return key, rows - at_or_below


def top_k_counts(values: np.ndarray, uids: np.ndarray | None, k: int, chunk_rows: int = 1 << 24) -> np.ndarray:
    """0/1 counts keeping exactly the k best (score desc, uid asc); NaN never kept.

    Every pass reads ``values`` one chunk at a time, so a memory-mapped column (the sample stage's) is never
    held in memory whole; beside the counts only one chunk's keys and the boundary ties are.
    """
    n = len(values)
    counts = np.zeros(n, dtype=np.uint32)
    if k <= 0:
        return counts
    starts = range(0, n, chunk_rows)
    chunks = [values[i:i + chunk_rows] for i in starts]
    key, above = kth_largest_key(chunks, k)
    ties = []
    for start, chunk in zip(starts, chunks):
        keys = order_keys(chunk)
        counts[start:start + len(keys)] = keys > key
        ties.append(start + np.flatnonzero(keys == key))
    ties = np.concatenate(ties)
    need = k - above
    if uids is None:
        chosen = ties[:need]  # no uids known: position order
    else:
        tie_uids = np.asarray(uids)[ties].astype(UID_DTYPE)
        chosen = ties[np.argsort(tie_uids, kind="stable")[:need]]
    counts[chosen] = 1
    return counts


class TopFractionSampler(Sampler):
    """Keep the top ``fraction`` of the pool by one score column."""

    name = "top_fraction"
    mode = "subset"

    class Params(Params):
        fraction: float = pydantic.Field(gt=0.0, le=1.0)
        column: str | None = None
        rule: Literal["exact", "datacomp"] = "exact"

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        values = np.asarray(scores.column(self.params.column), dtype=np.float32)
        k = int(np.floor(self.params.fraction * len(values)))
        if self.params.rule == "datacomp":
            return datacomp_fraction_rule(values, self.params.fraction)
        k = min(k, int(np.count_nonzero(~np.isnan(values))))
        return top_k_counts(values, scores.uids, k)

    def cut(self, budget: Budget) -> Cut:
        if self.params.rule == "datacomp":
            return Cut(self.params.column, "datacomp_fraction", self.params.fraction)
        return Cut(self.params.column, "top", int(np.floor(self.params.fraction * budget.pool_size)))


def datacomp_fraction_rule(values: np.ndarray, fraction: float) -> np.ndarray:
    """DataComp's ``get_threshold``: ``n = int(N*f)``, ``t = sorted_desc[n]``, keep ``score >= t``."""
    n = int(len(values) * fraction)
    ordered = -np.sort(-values[~np.isnan(values)])
    if n >= len(ordered):
        return (~np.isnan(values)).astype(np.uint32)
    return (values >= ordered[n]).astype(np.uint32)


class RandomFractionSampler(Sampler):
    """Keep exactly ``floor(fraction * N)`` uids chosen uniformly at random (seeded)."""

    name = "random_fraction"
    mode = "subset"

    class Params(Params):
        fraction: float = pydantic.Field(gt=0.0, le=1.0)

    def score_columns(self) -> tuple[str, ...]:
        return ()

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        n = budget.pool_size
        counts = np.zeros(n, dtype=np.uint32)
        counts[rng.choice(n, size=int(np.floor(self.params.fraction * n)), replace=False)] = 1
        return counts


@hookimpl
def register_samplers(register):
    for cls in (AllSampler, ThresholdSampler, TopFractionSampler, RandomFractionSampler):
        register(cls)
