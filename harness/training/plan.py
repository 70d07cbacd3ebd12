"""The feed plan: which pool rows the model is fed, in which order and in which training segment.

Every mode trains the same number of optimizer steps, the number DataComp's recipe gives a subset: per segment
("epoch" of open_clip_train) ``ceil((samples_seen // segments) / global_batch)`` batches, rounded up to a multiple
of the dataloader workers (``open_clip_train.data.get_wds_dataset`` rounds the same way), so
``samples_fed = segments * batches * global_batch``.  For the nano scales and DataComp's small/medium/large with
one worker this equals ``samples_seen`` exactly; DataComp's own 4 workers add a few batches (small: 3,140 steps
instead of 3,125).

- ``subset``: the kept uids that have an image are written once, in a seeded random order; open_clip_train then
  resamples shards up to the budget (``--dataset-resampled``), exactly as DataComp.  Nothing here is exact per uid.
- ``multiset``: one pass over the compiled multiset.  Occurrences are dealt into the run's
  ``segments * batches`` global batches so the copies of a uid land in different batches (guaranteed while its
  count does not exceed the number of batches); segment ``e`` is batches ``[e*B, (e+1)*B)``.
- ``schedule``: segment ``e`` is dealt from row ``e`` of the counts only.

When the selected occurrences that have an image differ from ``samples_fed`` the difference is made up
explicitly, never silently: missing occurrences are *padded* with repeats drawn by cycling through a seeded
permutation of the available ones (open_clip's own "roll over and repeat a few samples"), surplus ones are
*trimmed* at random.  ``expected`` holds the exact number of times each uid is fed per segment, and the manifest
reports ``padded`` and ``trimmed``; both are 0 for an exact scale and a selection without failed downloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from filterbench.harness.errors import FilterbenchError

PLANNED_MODES = ("multiset", "schedule")


class TrainError(FilterbenchError):
    """The training stage cannot run as asked (budget mismatch, nothing to train on, launch failure)."""


@dataclass(frozen=True)
class FeedBudget:
    """Optimizer steps and samples the recipe feeds, whatever the mode.

    Attributes:
        segments: checkpoint segments (open_clip epochs).
        global_batch: samples per optimizer step over all processes.
        batches_per_segment: optimizer steps per segment.
    """

    segments: int
    global_batch: int
    batches_per_segment: int

    @property
    def samples_per_segment(self) -> int:
        return self.batches_per_segment * self.global_batch

    @property
    def samples_fed(self) -> int:
        return self.segments * self.samples_per_segment

    @property
    def steps(self) -> int:
        return self.segments * self.batches_per_segment


def feed_budget(samples_seen: int, segments: int, global_batch: int, workers: int) -> FeedBudget:
    """The step count of DataComp's recipe: ``--train-num-samples samples_seen // segments`` rounded like open_clip."""
    per_segment = samples_seen // segments
    batches = math.ceil(per_segment / global_batch)
    loaders = max(1, workers)
    return FeedBudget(segments, global_batch, loaders * math.ceil(batches / loaders))


@dataclass
class Plan:
    """Pool rows per segment in feed order, plus the exact per-uid feed counts of the planned modes.

    Attributes:
        mode: the selection's mode.
        segments: one int64 array of pool rows per written segment (subset: a single one, each kept row once).
        expected: (segments, pool) uint32 feed counts (planned modes), None for subset.
        stats: selection/feed accounting for the manifest.
    """

    mode: str
    segments: list[np.ndarray]
    expected: np.ndarray | None
    stats: dict = field(default_factory=dict)


def build_plan(mode: str, counts: np.ndarray, available: np.ndarray, budget: FeedBudget,
               rng: np.random.Generator) -> Plan:
    """Plan what is fed for ``counts`` (N or E x N) given which pool rows have an image (``available``)."""
    counts = np.asarray(counts, dtype=np.int64)
    available = np.asarray(available, dtype=bool)
    stats = _missing_stats(counts, available)
    if mode == "subset":
        rows = np.flatnonzero((counts > 0) & available)
        if rows.size == 0:
            raise TrainError("nothing to train on: no selected uid has an image in the pool's tar shards")
        return Plan(mode, [rng.permutation(rows)], None, {**stats, "written": int(rows.size)})
    if mode == "multiset":
        return _plan_multiset(counts * available, budget, rng, stats)
    if mode == "schedule":
        return _plan_schedule(counts * available[None, :], budget, rng, stats)
    raise TrainError(f"unknown selection mode {mode!r} (expected subset, multiset or schedule)")


def _missing_stats(counts: np.ndarray, available: np.ndarray) -> dict:
    total = counts.sum(axis=0) if counts.ndim == 2 else counts
    lost = (total > 0) & ~available
    return {"selected_uids": int(np.count_nonzero(total)), "selected_samples": int(total.sum()),
            "missing_uids": int(np.count_nonzero(lost)), "missing_samples": int(total[lost].sum())}


def _plan_multiset(counts: np.ndarray, budget: FeedBudget, rng: np.random.Generator, stats: dict) -> Plan:
    filled, padded, trimmed = fill_to(counts, budget.samples_fed, rng)
    grid = deal(filled, budget.steps, budget.global_batch, rng)
    step = budget.batches_per_segment
    segments = [grid[e * step:(e + 1) * step].ravel() for e in range(budget.segments)]
    expected = np.stack([np.bincount(s, minlength=counts.size) for s in segments]).astype(np.uint32)
    return Plan("multiset", segments, expected,
                {**stats, "padded": padded, "trimmed": trimmed, "batches_with_repeats": repeats_in_batches(grid),
                 "written": budget.samples_fed})


def _plan_schedule(counts: np.ndarray, budget: FeedBudget, rng: np.random.Generator, stats: dict) -> Plan:
    if counts.shape[0] != budget.segments:
        raise TrainError(f"the schedule has {counts.shape[0]} segments but the scale trains {budget.segments}")
    segments, padded, trimmed, repeats = [], [], [], 0
    for row in counts:
        filled, pad, trim = fill_to(row, budget.samples_per_segment, rng)
        grid = deal(filled, budget.batches_per_segment, budget.global_batch, rng)
        segments.append(grid.ravel())
        padded.append(pad)
        trimmed.append(trim)
        repeats += repeats_in_batches(grid)
    expected = np.stack([np.bincount(s, minlength=counts.shape[1]) for s in segments]).astype(np.uint32)
    return Plan("schedule", segments, expected,
                {**stats, "padded": int(sum(padded)), "trimmed": int(sum(trimmed)), "padded_per_segment": padded,
                 "trimmed_per_segment": trimmed, "batches_with_repeats": repeats,
                 "written": budget.samples_fed})


def fill_to(counts: np.ndarray, target: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Counts summing to exactly ``target``: pad with seeded repeats or trim seeded occurrences.

    Returns:
        (new counts, occurrences added, occurrences removed).
    """
    have = int(counts.sum())
    if have == target:
        return counts.astype(np.int64), 0, 0
    if have == 0:
        raise TrainError("nothing to train on: no selected uid has an image in the pool's tar shards")
    rows = np.flatnonzero(counts)
    occurrences = np.repeat(rows, counts[rows])[rng.permutation(have)]
    if have < target:
        # cycle through the shuffled occurrences: every available one is repeated before any twice
        extra = occurrences[np.arange(target - have) % have]
        return counts + np.bincount(extra, minlength=counts.size), target - have, 0
    return np.bincount(occurrences[:target], minlength=counts.size), 0, have - target


def deal(counts: np.ndarray, batches: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Arrange ``counts`` (summing to ``batches * batch_size``) into a (batches, batch_size) grid of pool rows.

    Rows are taken in a seeded random order with their copies next to each other and dealt round-robin over the
    batches, so the ``c`` copies of a uid go to ``c`` different batches whenever ``c <= batches``; then the
    order inside each batch and the order of the batches are shuffled.
    """
    rows = rng.permutation(np.flatnonzero(counts))
    sequence = np.repeat(rows, counts[rows])
    if sequence.size != batches * batch_size:
        raise TrainError(f"cannot deal {sequence.size} samples into {batches} batches of {batch_size}")
    grid = sequence.reshape(batch_size, batches).T  # element i goes to batch i % batches
    grid = rng.permuted(grid, axis=1)
    return np.ascontiguousarray(grid[rng.permutation(batches)])


def repeats_in_batches(grid: np.ndarray) -> int:
    """How many batches (rows of ``grid``) hold some pool row twice."""
    ordered = np.sort(grid, axis=1)
    return int(np.count_nonzero((np.diff(ordered, axis=1) == 0).any(axis=1)))


def copy_numbers(rows: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same row (the ``j`` of DataComp's ``uid-j`` keys)."""
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, ordered.size]))
    numbers = np.empty(rows.size, dtype=np.int64)
    numbers[order] = np.arange(rows.size) - run_start
    return numbers
