"""End-to-end runs: a recipe at a scale with a seed, score -> sample -> train -> eval -> record.

Every stage is a content-addressed artifact, so a run reuses whatever is already complete and computes only the
rest.  Seeds vary the sampler and the training, never the pool or the scores (scores use the recipe's
``score_seed``).  What to run with comes in one resolved :class:`~filterbench.harness.config.RunConfig`, passed on
unchanged: the train stage gets its resolved scale, the eval stage the world's eval sets and task list, and the
record the same scale (so the record's ``official`` is the train manifest's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from filterbench.harness.config import RunConfig
from filterbench.harness.errors import FilterbenchError, RecipeError
from filterbench.harness.manager import Plugins, get_plugins
from filterbench.harness.pool import Pool
from filterbench.harness.recipes import Recipe, check_recipe
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Artifact, Store
from filterbench.harness.uidscorer import UidOnlyScorer

STAGES = ("score", "sample", "train", "eval")
StageCallback = Callable[[str, "RunResult", Artifact, bool], None]


@dataclass(frozen=True)
class RunContext:
    """What every run of one invocation shares: the configuration and the objects built from it once."""

    config: RunConfig
    store: Store
    pool: Pool
    plugins: Plugins
    on_stage: StageCallback | None = None
    progress: bool = False

    @classmethod
    def create(cls, config: RunConfig, plugins: Plugins | None = None, on_stage: StageCallback | None = None,
               progress: bool = False) -> RunContext:
        """The context of ``config``: its store (with the plugins' stage hooks) and its world's pool.

        Args:
            on_stage: called after each stage with (stage, result, artifact, reused).
            progress: show progress bars with an ETA on stderr (scoring, training batches, eval tasks).
        """
        plugins = plugins or get_plugins()
        return cls(config, Store(config.workdir, hooks=plugins), Pool(config.pool), plugins, on_stage, progress)


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
    """Run one recipe with one seed up to ``ctx.config.until``."""
    until = ctx.config.until
    if until not in STAGES:
        raise RecipeError(f"--until must be one of {STAGES}, not {until!r}")
    if ctx.config.scale is None:
        raise RecipeError("a run needs a scale (RunConfig.scale)")
    plugins = ctx.plugins
    check_recipe(recipe, plugins)
    result = RunResult(recipe, seed)
    result.scores = _score(ctx, recipe, plugins, result)
    if until == "score":
        return result
    started = time.time()
    sampler = plugins.sampler_class(recipe.sampler.name)(**recipe.sampler.params)
    result.selection = run_sample(ctx.store, sampler, result.scores,
                                  budget=ctx.config.scale.row.budget(ctx.pool.size), seed=seed, plugins=plugins,
                                  executor=ctx.config.executor)
    _report(ctx, "sample", result, result.selection, started)
    if until == "sample":
        return result
    result.train = _train(ctx, result)
    if until == "train":
        return result
    result.eval = _evaluate(ctx, result)
    result.summary = result.eval.manifest.get("summary", {})
    if ctx.config.records_dir is not None:
        from filterbench.harness.recording import record_run

        result.record = record_run(ctx, result)
    return result


def _score(ctx: RunContext, recipe: Recipe, plugins: Plugins, result: RunResult) -> list[Artifact]:
    scorers = [plugins.scorer_class(s.name)(**s.params) for s in recipe.scorers] or [UidOnlyScorer()]
    artifacts = []
    for scorer in scorers:
        started = time.time()
        artifact = run_score(ctx.store, ctx.pool, scorer, seed=recipe.score_seed, plugins=plugins,
                             progress=ctx.progress, executor=ctx.config.executor)
        _report(ctx, "score", result, artifact, started)
        artifacts.append(artifact)
    return artifacts


def _train(ctx: RunContext, result: RunResult) -> Artifact:
    try:
        from filterbench.harness.stages.train import run_train
    except ImportError as exc:
        raise FilterbenchError(f"the training stage is not available in this build ({exc})") from None
    started = time.time()
    artifact = run_train(ctx.store, result.selection, ctx.config.scale, seed=result.seed, progress=ctx.progress)
    _report(ctx, "train", result, artifact, started)
    return artifact


def _evaluate(ctx: RunContext, result: RunResult) -> Artifact:
    from filterbench.harness.stages.evaluate import run_eval

    started = time.time()
    artifact = run_eval(ctx.store, result.train, evalsets=ctx.config.evalsets, tasklist=ctx.config.tasklist,
                        progress=ctx.progress, executor=ctx.config.executor)
    _report(ctx, "eval", result, artifact, started)
    return artifact


def run_all(ctx: RunContext, recipes: list[Recipe]) -> list[RunResult]:
    """Every recipe with every seed of the configuration, recipe-major, so that shared score artifacts are
    computed once."""
    return [run_recipe(ctx, recipe, seed) for recipe in recipes for seed in ctx.config.seeds]


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
