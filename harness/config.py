"""The run configuration: what one command runs with, resolved and validated once where the command starts.

``filterbench run`` and the stage commands (``score``, ``sample``, ``train``, ``eval``) turn their options into
one :class:`RunConfig` with :func:`resolve_run_config`; the Python API does the same.  Everything downstream
(runner, stages, records) receives that object, or the resolved parts of it, unchanged: the scale row is
resolved with its overrides once (:class:`~filterbench.harness.scales.ResolvedScale`), the world is opened once,
and a missing part fails here, in one line, before any work starts.

Precedence: a part given on the command line (``--pool``, ``--evalsets``, ``--tasklist``, ``--input``) replaces
that part of the world; the world is ``--world NAME``, else the world of a bare ``--pool`` (no eval sets or
inputs unless given), else the default world of the scale (``nano-xs`` and ``nano`` have one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.executor import Executor, ExecutorSpec, InlineExecutor, make_executor
from filterbench.harness.scales import ResolvedScale, resolve_scale
from filterbench.harness.worlds import World, WorldError

STAGES = ("score", "sample", "train", "eval")


class ConfigError(FilterbenchError):
    """Options that do not make a runnable configuration (a missing world part, a bad count)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one command runs with.

    Attributes:
        workdir: the artifact store (``--workdir`` / ``$FILTERBENCH_HOME``).
        world: the opened world (pool, eval sets, task list, inputs, oracle); None for commands that need none
            (``train`` reads its pool from the selection).
        scale: the scale row after overrides, with ``official``; None for commands that need none (``score``).
        seeds: the seeds to run (``--seeds N`` gives 0 .. N-1).
        records_dir: where finished runs' records go (default ``<workdir>/records``).
        until: the last stage to run.
        executor: where stages' units run (``--executor``), built once here from an
            :class:`~filterbench.harness.executor.ExecutorSpec`.
    """

    workdir: Path
    world: World | None = None
    scale: ResolvedScale | None = None
    seeds: tuple[int, ...] = (0,)
    records_dir: Path | None = None
    until: str = "eval"
    executor: Executor = dataclasses.field(default_factory=InlineExecutor)

    @property
    def pool(self) -> Path:
        return self._world().pool

    @property
    def evalsets(self) -> Path | None:
        return self._world().evalsets

    @property
    def tasklist(self) -> str | None:
        return self._world().tasklist

    @property
    def oracle(self) -> Path | None:
        return self._world().oracle

    @property
    def inputs(self) -> Mapping[str, Path]:
        return self._world().inputs

    def _world(self) -> World:
        if self.world is None:
            raise ConfigError("this command was configured without a world (give --world NAME or --pool DIR)")
        return self.world


def resolve_run_config(*, workdir: str | Path | None = None, scale: str | None = None,
                       overrides: Mapping[str, Any] | None = None, world: str | None = None,
                       pool: str | Path | None = None, evalsets: str | Path | None = None,
                       tasklist: str | None = None, inputs: Mapping[str, str | Path] | None = None,
                       seeds: int = 1, records: str | Path | None = None, until: str = "eval", workers: int = 1,
                       executor: ExecutorSpec | None = None, stages: tuple[str, ...] | None = None, plugins: Any = None,
                       log: Callable[[str], None] | None = None) -> RunConfig:
    """Resolve and validate a configuration; see the module docstring for the precedence of the parts.

    Args:
        stages: the stages the command runs (default: every stage up to ``until``); they decide which parts
            of the world must be present (the pool to score, its images to train, eval sets to evaluate) and
            whether a default world is opened at all (a lone ``train`` needs none).
        plugins: the plugin set whose worlds are known (default: the process-wide one).
        log: receives the world build's phases, one line each, when opening the world builds it.

    Raises:
        ConfigError, WorldError, RecipeError: one line naming the option, world, part or file at fault.
    """
    from filterbench.harness.store import default_workdir

    _check_counts(until, seeds, workers)
    spec = executor or ExecutorSpec("local", workers)
    stages = stages or STAGES[:STAGES.index(until) + 1]
    root = Path(workdir) if workdir is not None else default_workdir()
    resolved = _scale(scale, overrides)
    given = _Parts(pool, evalsets, tasklist, inputs)
    opened = _world(world, given, stages, resolved, root, plugins, log)
    if opened is not None:
        opened = given.apply(opened)
        _validate(opened, stages)
        _declare_inputs(opened)
    return RunConfig(workdir=root, world=opened, scale=resolved, seeds=tuple(range(seeds)),
                     records_dir=Path(records) if records is not None else root / "records", until=until,
                     executor=make_executor(spec, workdir=root))


def _check_counts(until: str, seeds: int, workers: int) -> None:
    if until not in STAGES:
        raise ConfigError(f"--until must be one of {', '.join(STAGES)}, not {until!r}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {seeds}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")


def _scale(name: str | None, overrides: Mapping[str, Any] | None) -> ResolvedScale | None:
    if name is None:
        if overrides:
            raise ConfigError(f"-o {', '.join(sorted(overrides))} overrides a scale: give --scale S too")
        return None
    return resolve_scale(name, overrides)


@dataclass(frozen=True)
class _Parts:
    """World parts given on the command line."""

    pool: str | Path | None
    evalsets: str | Path | None
    tasklist: str | None
    inputs: Mapping[str, str | Path] | None

    def cover(self, stages: tuple[str, ...], tasklist_needed: bool = True) -> bool:
        """Whether these parts are all that ``stages`` read, so that no world has to be opened (without
        ``tasklist_needed``, eval sets alone cover evaluation: the task list then defaults to datacomp_v1)."""
        pool_ok = "score" not in stages or self.pool is not None
        eval_ok = "eval" not in stages or (self.evalsets is not None
                                           and (self.tasklist is not None or not tasklist_needed))
        return pool_ok and eval_ok

    def as_world(self) -> World | None:
        if self.pool is None and self.evalsets is None:
            return None
        name = f"pool:{Path(self.pool).name}" if self.pool is not None else "command-line"
        return self.apply(World(name, None))

    def apply(self, world: World) -> World:
        """``world`` with these parts in place of its own."""
        given: dict[str, Any] = {}
        if self.pool is not None:
            given["pool"] = Path(self.pool)
        if self.evalsets is not None:
            given["evalsets"] = Path(self.evalsets)
        if self.tasklist is not None:
            given["tasklist"] = str(self.tasklist)
        if self.inputs:
            given["inputs"] = MappingProxyType({**world.inputs, **{k: Path(v) for k, v in self.inputs.items()}})
        return dataclasses.replace(world, **given) if given else world


def _world(name: str | None, given: _Parts, stages: tuple[str, ...], scale: ResolvedScale | None,
           workdir: Path, plugins: Any, log: Callable[[str], None] | None) -> World | None:
    """The named world, else the world of the parts given (a bare --pool), else the scale's default world."""
    if name is None and (given.pool is not None or given.cover(stages)):
        return given.as_world()
    sources = _sources(plugins, workdir)
    if name is not None:
        from filterbench.harness.worlds import find_world

        return find_world(name, sources).open(log)
    from filterbench.harness.worlds import default_world

    source = default_world(scale.name, sources) if scale is not None else None
    if source is not None:
        return source.open(log)
    if given.cover(stages, tasklist_needed=False):
        return given.as_world()
    what = f"scale {scale.name!r} has no default world" if scale is not None else "no world given"
    raise ConfigError(f"{what}: give --world NAME (see `filterbench world ls`) or --pool DIR")


def _sources(plugins: Any, workdir: Path) -> dict:
    from filterbench.harness.manager import get_plugins
    from filterbench.harness.worlds import world_sources

    return world_sources(plugins or get_plugins(), workdir)


def _validate(world: World, stages: tuple[str, ...]) -> None:
    """Fail on the first missing part that ``stages`` read."""
    from filterbench.harness.worldcheck import world_problems

    problems = world_problems(world, pool="score" in stages, images="score" in stages and "train" in stages,
                              evaluation="eval" in stages)
    if problems:
        more = f" (and {len(problems) - 1} more: `filterbench world check`)" if len(problems) > 1 else ""
        raise WorldError(problems[0] + more)


def _declare_inputs(world: World) -> None:
    from filterbench.harness.targets import declare_pool_inputs

    if world.inputs and world.pool is not None:
        declare_pool_inputs(world.pool, dict(world.inputs))
