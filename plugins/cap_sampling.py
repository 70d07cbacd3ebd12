"""Multiset samplers ``soft_cap`` (SCS) and ``hard_cap`` (HCS) from FLYT.

Card
    Paper: Shechter & Carmon, "Filter Like You Test: Data-Driven Data Filtering for CLIP Pretraining",
        arXiv 2503.08805 (NeurIPS 2025).  SCS is the sampler of their best DataComp-medium result
        (M-FLYT + SCS).
    Reference implementation: formll/FLYT ``examples.ipynb`` (commit 50035b3), functions
        ``soft_cap_sampling`` (rounds of ``batch_size`` draws without replacement from ``softmax(z)``, then
        ``z[drawn] -= alpha``) and ``hard_cap_sampling`` (batches of i.i.d. draws from ``softmax(s)`` over
        uncapped items, a draw that hits the cap being discarded).
    What is sampled: ``budget.samples_seen`` draws, one at a time, from ``softmax(s - alpha * counts)`` (soft
        cap) or from ``softmax(s)`` restricted to items drawn fewer than ``cap`` times (hard cap).  The output
        is the count per uid.  By default this exact one-draw-at-a-time process is sampled by an exponential
        race (``filterbench.plugins.cap_race``), in O(pool + budget) time and about 12 bytes per uid;
        ``batch=G`` runs the notebook's batched algorithm instead (needed only to reproduce FLYT's datasets;
        for soft_cap it caps every count at the number of rounds and flattens the sample when G is large).
    Scores: one column (``column``; default the only one), used as log-weights at temperature 1: adding a
        constant changes nothing, multiplying changes the sample.  NaN and -inf scores are never drawn; +inf
        is an error.  hard_cap needs ``samples_seen <= cap x (number of finite scores)``.  Event times are
        float64, so a budget that can only be filled by drawing items more than about 700 nats below the top
        score (relative weight below e^-700) fails with a clear error instead of sampling.
    Determinism: the exact sampler takes one 64-bit key from the stage's rng; the counts are a function of
        (key, scores, budget, params) only, never of internal horizon guesses, chunking or thread count.
    Params:
        soft_cap: ``alpha`` (repetition penalty, >= 0; FLYT's released models used 0.15 and 0.25; ``inf``
            means draws without replacement), ``batch`` (None = exact; else draws per round), ``column``.
        hard_cap: ``cap`` (frequency limit, >= 1; FLYT's demo used 15), ``batch`` (None = exact; else i.i.d.
            draws per batch, the notebook used 1,000,000), ``column``.
    Versions: 1 - first release.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pydantic
from filterbench.harness import contract
from filterbench.harness.contract import Budget, Sampler, ScoreTable
from filterbench.harness.errors import ParamsError
from filterbench.harness.hookspecs import hookimpl
from filterbench.plugins.cap_race import (
    Tuning,
    check_budget,
    hard_cap_law,
    race_counts,
    soft_cap_law,
)


def _tuning() -> Tuning:
    """Use up to two threads: the race is memory-bound and scales little beyond that."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return Tuning(threads=max(1, min(2, cores)))


@contextlib.contextmanager
def _params_errors(name: str):
    """Report the math module's ValueErrors as one-line ParamsErrors naming the sampler."""
    try:
        yield
    except ValueError as exc:
        raise ParamsError(f"sampler {name!r}: {exc}") from None


def _finite_scores(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 copy of the scores with NaN/-inf set to -inf, and the mask of drawable items."""
    z = np.asarray(values, dtype=np.float64).copy()
    if np.isposinf(z).any():
        raise ValueError("a score is +inf; scores are log-weights (NaN and -inf are never drawn)")
    ok = np.isfinite(z)
    z[~ok] = -np.inf
    return z, ok


def soft_cap_batched(values: np.ndarray, n: int, alpha: float, batch: int,
                     rng: np.random.Generator) -> np.ndarray:
    """FLYT's batched SCS: rounds of ``batch`` draws without replacement, then ``alpha`` off each drawn logit.

    A round's draws are a Plackett-Luce sample of size G from ``softmax(z)`` (the law of the notebook's
    ``np.random.choice(replace=False, p=...)``), taken as the top G of ``z + Gumbel`` noise; the Gumbel
    variates are ``-log E`` with ``E ~ Exp(1)`` (numpy's ziggurat exponential: one log instead of two).
    """
    z, ok = _finite_scores(values)
    check_budget(n, soft_cap_law(alpha), int(ok.sum()), len(z))
    if min(batch, n) > ok.sum():
        raise ValueError(f"batch {batch} exceeds the {int(ok.sum())} drawable items")
    counts = np.zeros(len(z), dtype=np.uint32)
    left = n
    while left:
        g = min(batch, left)
        keys = z - np.log(rng.standard_exponential(len(z)))
        top = np.argpartition(keys, len(z) - g)[len(z) - g:]
        counts[top] += 1
        z[top] -= alpha  # inf alpha: never again
        left -= g
    return counts


def _accepted(draws: np.ndarray, counts: np.ndarray, cap: int) -> np.ndarray:
    """Which draws of a batch the notebook keeps, walking them in order: those still under the cap."""
    order = np.argsort(draws, kind="stable")
    ranked = draws[order]
    first = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1]  # start of each run of equal ids
    rank = np.arange(len(draws)) - np.repeat(first, np.diff(np.r_[first, len(draws)]))
    earlier = np.empty(len(draws), dtype=np.int64)
    earlier[order] = rank  # how many draws of the same item came before in this batch
    return counts[draws] + earlier < cap


def hard_cap_batched(values: np.ndarray, n: int, cap: int, batch: int,
                     rng: np.random.Generator) -> np.ndarray:
    """FLYT's batched HCS: i.i.d. batches from softmax over uncapped items; over-cap draws are discarded."""
    z, ok = _finite_scores(values)
    check_budget(n, hard_cap_law(cap), int(ok.sum()), len(z))
    counts = np.zeros(len(z), dtype=np.uint32)
    p0 = np.exp(z - z[ok].max()) if ok.any() else z
    left = n
    while left:
        p = np.where(counts < cap, p0, 0.0)
        draws = rng.choice(len(z), size=batch, p=p / p.sum())
        kept = draws[_accepted(draws, counts, cap)][:left]
        np.add.at(counts, kept, 1)
        left -= len(kept)
    return counts


class _CapSampler(Sampler):
    """What soft and hard cap share: one score column read as log-weights, exact race or batched form."""

    mode = "multiset"

    def law(self):
        raise NotImplementedError

    def batched(self, values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        # log-weights at temperature T: softmax(scores / T); T = 1 reads the scores as they are
        values = np.asarray(scores.column(self.params.column), dtype=np.float64) / self.params.temperature
        with _params_errors(self.name):
            if self.params.batch is None:
                return race_counts(values, budget.samples_seen, self.law(), rng, _tuning())
            return self.batched(values, budget.samples_seen, rng)


class SoftCapSampler(_CapSampler):
    """Soft Cap Sampling: each draw of a uid lowers its logit by ``alpha`` (FLYT)."""

    name = "soft_cap"
    version = 1

    class Params(contract.Params):
        column: str | None = pydantic.Field(None, description="score column; None = the only one")
        alpha: float = pydantic.Field(0.15, ge=0, description="repetition penalty (inf: no repeats)")
        batch: int | None = pydantic.Field(None, ge=1, description="None: exact; G: G draws per round")
        temperature: float = pydantic.Field(1.0, gt=0, description="scores are divided by it (log-weights)")

    def law(self):
        return soft_cap_law(self.params.alpha)

    def batched(self, values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        return soft_cap_batched(values, n, self.params.alpha, self.params.batch, rng)


class HardCapSampler(_CapSampler):
    """Hard Cap Sampling: draws from softmax(scores), a uid being masked once drawn ``cap`` times (FLYT)."""

    name = "hard_cap"
    version = 1

    class Params(contract.Params):
        column: str | None = pydantic.Field(None, description="score column; None = the only one")
        cap: int = pydantic.Field(15, ge=1, description="most copies of one uid")
        batch: int | None = pydantic.Field(None, ge=1, description="None: exact; B: batches of B draws")
        temperature: float = pydantic.Field(1.0, gt=0, description="scores are divided by it (log-weights)")

    def law(self):
        return hard_cap_law(self.params.cap)

    def batched(self, values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        return hard_cap_batched(values, n, self.params.cap, self.params.batch, rng)


@hookimpl
def register_samplers(register):
    register(SoftCapSampler)
    register(HardCapSampler)
