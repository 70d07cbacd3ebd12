"""End-to-end runs: a recipe at a scale with a seed, score -> sample -> train -> eval -> record.

Every stage is a content-addressed artifact, so a run reuses whatever is already complete and computes only the
rest.  Seeds vary the sampler and the training, never the pool or the scores (scores use the recipe's
``score_seed``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from filterbench.harness.errors import FilterbenchError, RecipeError
from filterbench.harness.manager import Plugins, get_plugins
from filterbench.harness.pool import Pool
from filterbench.harness.recipes import Recipe, check_recipe
from filterbench.harness.scales import Scale
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Artifact, Store
from filterbench.harness.uidscorer import UidOnlyScorer

STAGES = ("score", "sample", "train", "eval")


@dataclass
class RunContext:
    """What is shared by every run of one ``filterbench run`` invocation."""

    store: Store
    pool: Pool
    scale: Scale
    official: bool = True
    overrides: dict = field(default_factory=dict)
    workers: int = 1
    until: str = "eval"
    evalsets: Path | None = None
    tasklist: str | None = None
    oracle_dir: Path | None = None
    records_dir: Path | None = None
    plugins: Plugins | None = None
    on_stage: Callable[[str, "RunResult", Artifact, bool], None] | None = None


@dataclass
class RunResult:
    recipe: Recipe
    seed: int
    scores: list[Artifact] = field(default_factory=list)
    selection: Artifact | None = None
    train: Artifact | None = None
    eval: Artifact | None = None
    record: Path | None = None
    summary: dict = field(default_factory=dict)


def _reused(artifact: Artifact, started: float) -> bool:
    return (artifact.path / "_COMPLETE").stat().st_mtime < started


def _report(ctx: RunContext, stage: str, result: RunResult, artifact: Artifact, started: float) -> None:
    if ctx.on_stage is not None:
        ctx.on_stage(stage, result, artifact, _reused(artifact, started))


def run_recipe(ctx: RunContext, recipe: Recipe, seed: int) -> RunResult:
    """Run one recipe with one seed up to ``ctx.until``."""
    if ctx.until not in STAGES:
        raise RecipeError(f"--until must be one of {STAGES}, not {ctx.until!r}")
    plugins = ctx.plugins or get_plugins()
    check_recipe(recipe, plugins)
    result = RunResult(recipe, seed)
    result.scores = _score(ctx, recipe, plugins, result)
    if ctx.until == "score":
        return result
    started = time.time()
    sampler = plugins.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    result.selection = run_sample(ctx.store, sampler, result.scores, budget=ctx.scale.budget(ctx.pool.size),
                                  seed=seed, plugins=plugins)
    _report(ctx, "sample", result, result.selection, started)
    if ctx.until == "sample":
        return result
    result.train = _train(ctx, result)
    if ctx.until == "train":
        return result
    result.eval = _evaluate(ctx, result)
    result.summary = result.eval.manifest.get("summary", {})
    if ctx.records_dir is not None:
        from filterbench.harness.recording import record_run

        result.record = record_run(ctx, result, plugins)
    return result


def _score(ctx: RunContext, recipe: Recipe, plugins: Plugins, result: RunResult) -> list[Artifact]:
    scorers = [plugins.scorer_class(s.name)(**s.params) for s in recipe.scorers] or [UidOnlyScorer()]
    artifacts = []
    for scorer in scorers:
        started = time.time()
        artifact = run_score(ctx.store, ctx.pool, scorer, seed=recipe.score_seed, workers=ctx.workers,
                             plugins=plugins)
        _report(ctx, "score", result, artifact, started)
        artifacts.append(artifact)
    return artifacts


def _train(ctx: RunContext, result: RunResult) -> Artifact:
    try:
        from filterbench.harness.stages.train import run_train
    except ImportError as exc:
        raise FilterbenchError(f"the training stage is not available in this build ({exc})") from None
    started = time.time()
    # the scale's name plus the overrides, so that the train stage itself decides whether the run is official
    artifact = run_train(ctx.store, result.selection, ctx.scale.name, seed=result.seed, overrides=ctx.overrides)
    _report(ctx, "train", result, artifact, started)
    return artifact


def _evaluate(ctx: RunContext, result: RunResult) -> Artifact:
    from filterbench.harness.stages.evaluate import run_eval

    started = time.time()
    artifact = run_eval(ctx.store, result.train, evalsets=ctx.evalsets, tasklist=ctx.tasklist)
    _report(ctx, "eval", result, artifact, started)
    return artifact


def run_all(ctx: RunContext, recipes: list[Recipe], seeds: list[int]) -> list[RunResult]:
    """Every recipe with every seed, recipe-major, so that shared score artifacts are computed once."""
    return [run_recipe(ctx, recipe, seed) for recipe in recipes for seed in seeds]


def headline_scores(result: RunResult) -> dict[str, float | None]:
    """The run's group scores (Average first-class), from the eval stage's summary ``scores``."""
    return dict((result.summary or {}).get("scores") or {})


def summary_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per run for the closing table."""
    rows = []
    for r in results:
        stats = r.selection.manifest["stats"] if r.selection else {}
        groups = headline_scores(r)
        rows.append({"recipe": r.recipe.name, "seed": r.seed, "kept": stats.get("unique_uids"),
                     "max_count": stats.get("max_count"), **{k: v for k, v in groups.items()}})
    return rows
