"""Subset sampler ``chain``: successive conditions on score columns, each on the survivors of the last.

Card
    Uses: DataComp's "Image-based ∩ CLIP score (L/14 30%)" and LAION-2B rules (mlfoundations/datacomp
        ``baselines/apply_filter.py``: the CLIP threshold is taken over the whole pool, then the other filters
        apply), and the negCLIPLoss paper's two-stage selection (Wang et al. 2024, arXiv 2405.19547;
        ypwang61/negCLIPLoss_NormSim ``baselines/vas2.py`` ``load_uids_with_cs_new``: top 30% of the pool by
        negCLIPLoss, then among those the top 20% *of the pool* by NormSim).
    Params: ``steps``, a list applied in order; each step names a ``column`` and exactly one of
        ``threshold`` (keep survivors with ``score >= threshold``) or
        ``fraction`` (keep the best ``floor(fraction * base)`` survivors), with
            ``of``: ``pool`` (base = pool size, the default and the papers' convention) or ``survivors``;
            ``rank_among``: ``survivors`` (default: rank only the rows still in, a chain) or ``pool`` (rank
                the whole pool, then intersect with the survivors: DataComp's "threshold from the whole
                pool");
            ``rule``: ``exact`` (exactly that many, ties by ascending uid; the negCLIPLoss fork's argpartition
                rule, made deterministic) or ``datacomp`` (``t = sorted_desc[int(base*f)]``, keep ``>= t``:
                one more plus ties, DataComp's ``get_threshold``).
        NaN scores never pass a step.  When a step asks for more rows than survive, all survivors pass.
    ``union`` (same module): the uids that pass *any* of its ``members`` (steps of the same form, each applied
        to the whole pool), e.g. the union of HYPE's and DFN's top 15%.
    Checks: tests/plugins/test_chain_sampler.py (against direct numpy computations of each rule).
    Versions: 1 - first release.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pydantic

from filterbench.harness.contract import Budget, Params, Sampler, ScoreTable
from filterbench.harness.hookspecs import hookimpl
from filterbench.plugins.basic_samplers import top_k_counts


class Step(Params):
    """One condition of a chain."""

    column: str
    threshold: float | None = None
    fraction: float | None = pydantic.Field(default=None, gt=0.0, le=1.0)
    of: Literal["pool", "survivors"] = "pool"
    rank_among: Literal["survivors", "pool"] = "survivors"
    rule: Literal["exact", "datacomp"] = "exact"

    @pydantic.model_validator(mode="after")
    def _one_condition(self) -> Step:
        if (self.threshold is None) == (self.fraction is None):
            raise ValueError(f"step on {self.column!r}: give exactly one of threshold or fraction")
        if self.rank_among == "pool" and self.of == "survivors":
            raise ValueError(f"step on {self.column!r}: rank_among=pool needs of=pool")
        return self


def _best(values: np.ndarray, uids: np.ndarray | None, fraction: float, base: int, rule: str) -> np.ndarray:
    """Boolean mask of the best rows of ``values`` (NaN never kept) under ``rule``."""
    finite = ~np.isnan(values)
    if rule == "datacomp":
        n = int(base * fraction)
        ordered = -np.sort(-values[finite])
        return finite.copy() if n >= len(ordered) else values >= ordered[n]
    k = min(int(np.floor(fraction * base)), int(finite.sum()))
    return top_k_counts(values.astype(np.float32), uids, k).astype(bool)


def apply_step(step: Step, values: np.ndarray, uids: np.ndarray | None, alive: np.ndarray) -> np.ndarray:
    """The survivors after ``step``, given the current survivors ``alive`` (a boolean mask over the pool)."""
    values = np.asarray(values, dtype=np.float32)
    if step.threshold is not None:
        return alive & (values >= step.threshold)
    if step.rank_among == "pool":
        return alive & _best(values, uids, step.fraction, len(values), step.rule)
    index = np.flatnonzero(alive)
    base = len(values) if step.of == "pool" else len(index)
    chosen = _best(values[index], None if uids is None else uids[index], step.fraction, base, step.rule)
    out = np.zeros_like(alive)
    out[index[chosen]] = True
    return out


class ChainSampler(Sampler):
    """Apply ``steps`` in order; what survives the last step is the subset."""

    name = "chain"
    version = 1
    mode = "subset"

    class Params(Params):
        steps: tuple[Step, ...] = pydantic.Field(min_length=1)

    def score_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(step.column for step in self.params.steps))

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        alive = np.ones(len(scores), dtype=bool)
        for step in self.params.steps:
            alive = apply_step(step, scores.column(step.column), scores.uids, alive)
        return alive.astype(np.uint32)


class UnionSampler(Sampler):
    """Keep a uid when any of ``members`` keeps it; each member is a step applied to the whole pool.

    The union of several methods' selections ("HYPE ∪ DFN": each method's own top fraction of the pool, then
    every uid that either keeps).  NaN never passes a member.
    """

    name = "union"
    version = 1
    mode = "subset"

    class Params(Params):
        members: tuple[Step, ...] = pydantic.Field(min_length=1)

    def score_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(member.column for member in self.params.members))

    def sample(self, scores: ScoreTable, budget: Budget, rng: np.random.Generator) -> np.ndarray:
        everyone = np.ones(len(scores), dtype=bool)
        kept = np.zeros(len(scores), dtype=bool)
        for member in self.params.members:
            kept |= apply_step(member, scores.column(member.column), scores.uids, everyone)
        return kept.astype(np.uint32)


@hookimpl
def register_samplers(register):
    register(ChainSampler)
    register(UnionSampler)
