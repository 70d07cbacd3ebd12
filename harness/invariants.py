"""The invariants of each sampler mode, enforced on every sampler output."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from filterbench.harness.errors import InvariantError

if TYPE_CHECKING:
    from filterbench.harness.contract import Budget, Sampler


def check_counts(counts: np.ndarray, sampler: "Sampler", budget: "Budget") -> np.ndarray:
    """Validate a sampler's counts for its mode and return them as uint32.

    Raises:
        InvariantError: naming the sampler and the violated rule.
    """
    who = f"sampler {sampler.name!r} (mode {sampler.mode})"
    counts = np.asarray(counts)
    if counts.dtype.kind not in "iub":
        raise InvariantError(f"{who} returned {counts.dtype} counts; expected integers")
    if counts.size and counts.min() < 0:
        raise InvariantError(f"{who} returned negative counts (min {counts.min()})")
    n = budget.pool_size
    if sampler.mode == "schedule":
        if counts.shape != (budget.segments, n):
            raise InvariantError(f"{who} returned shape {counts.shape}; expected (segments, pool) = "
                                 f"({budget.segments}, {n})")
    elif counts.shape != (n,):
        raise InvariantError(f"{who} returned shape {counts.shape}; expected ({n},)")
    if n and not counts.any():
        raise InvariantError(f"{who} selected no uid of {n:,}; an empty selection cannot be trained (check its "
                             "params: a threshold above every score?)")
    if sampler.mode == "subset" and counts.size and counts.max() > 1:
        raise InvariantError(f"{who} returned a count of {counts.max()}; subset counts are 0 or 1")
    if sampler.mode == "multiset" and int(counts.sum(dtype=np.int64)) != budget.samples_seen:
        raise InvariantError(f"{who} counts sum to {int(counts.sum(dtype=np.int64))}; "
                             f"multiset counts must sum to samples_seen={budget.samples_seen}")
    if counts.size and counts.max() > np.iinfo(np.uint32).max:
        raise InvariantError(f"{who} returned a count above 2**32-1")
    return counts.astype(np.uint32, copy=False)
