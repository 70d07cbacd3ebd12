"""Executors: how a stage's independent work units run (in this process, on a local pool, on Ray, as Slurm arrays).

A stage cuts its work into *units* (a metadata shard, a score part) and describes the work on one unit as a
:class:`Task`: a small picklable object with a once-per-worker :meth:`Task.setup` (load a model, open the pool)
and :meth:`Task.run` (process one unit, commit its outputs atomically, return small stats).  An
:class:`Executor` runs a task over units and yields ``(index, result)`` pairs as units finish; the stage folds
them (:meth:`Executor.map` keeps them in unit order, :meth:`Executor.fold` merges them as they come, so the
driver never holds more than one accumulator).  Outputs never depend on the executor or the worker count: a
unit's outputs depend only on the unit (seeds are derived from its name), and units are idempotent, so a
retried or repeated unit rewrites the same bytes.

Executors here: ``inline`` (serial, this process: debugging), ``local`` (a process pool on this machine; forked
workers, or spawned ones once CUDA is initialised, since a forked child of a CUDA parent cannot use the GPU).
``ray`` and ``slurm`` live in :mod:`filterbench.harness.ray_executor` and :mod:`filterbench.harness.slurm`;
:func:`make_executor` builds any of them from a :class:`ExecutorSpec`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import uuid
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

from tqdm import tqdm

from filterbench.harness.contract import Resources
from filterbench.harness.errors import FilterbenchError, did_you_mean

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: errors worth a retry on another attempt (a network filesystem hiccup); anything else is a bug or bad input
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError, InterruptedError,
                                                     BlockingIOError)


class Task(ABC):
    """The work on one unit; subclasses implement :meth:`run` (and optionally :meth:`setup`).

    A task travels to workers by pickling (spawned processes, Ray, Slurm plans), so it holds paths and small
    parameters, never sample data; forked local workers inherit it instead.
    """

    resources: Resources = Resources()
    #: a local pool spawns (never forks) this task's workers: torch models after this process ran torch
    #: (an in-process training's OpenMP threads do not survive a fork)
    spawn: ClassVar[bool] = False

    def setup(self) -> None:
        """Once per worker process or actor, before its first unit (load a model, open the pool)."""

    @abstractmethod
    def run(self, unit: Any) -> Any:
        """Process one unit; commit its outputs atomically; return small, picklable stats."""


class FunctionTask(Task):
    """A plain function as a task (only the inline and forked local executors can run a closure)."""

    def __init__(self, function: Callable[[Any], Any]):
        self.function = function

    def run(self, unit: Any) -> Any:
        return self.function(unit)


class Deferred(FilterbenchError):
    """The units were handed to a batch system (Slurm); rerun the same command once they have finished."""


class Executor(ABC):
    """Runs a :class:`Task` over units.  Subclasses implement :meth:`imap`."""

    name: ClassVar[str]

    @abstractmethod
    def imap(self, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index into units, result)`` as units finish, in any order.  The first unit that raises
        stops the others and its exception propagates; finished units keep their outputs (resumable)."""

    def map(self, task: Task, units: Iterable[Any], desc: str = "", progress: bool = True) -> list[Any]:
        """Results in the order of ``units``."""
        units = list(units)
        results: list[Any] = [None] * len(units)
        for i, result in self._progress(task, units, desc, progress):
            results[i] = result
        return results

    def fold(self, task: Task, units: Iterable[Any], combine: Callable[[Any, int, Any], Any], initial: Any,
             desc: str = "", progress: bool = True) -> Any:
        """``combine(accumulator, index, result)`` over results as they arrive; the combine must not depend on
        arrival order (sums, writes at a unit's own offset) for outputs to be executor-independent."""
        units = list(units)
        accumulator = initial
        for i, result in self._progress(task, units, desc, progress):
            accumulator = combine(accumulator, i, result)
        return accumulator

    def _progress(self, task: Task, units: list, desc: str, progress: bool) -> Iterator[tuple[int, Any]]:
        bar = tqdm(total=len(units), desc=desc, unit="unit", disable=not progress or not units, leave=False)
        try:
            for item in self.imap(task, units) if units else ():
                bar.update()
                yield item
        finally:
            bar.close()

    @classmethod
    def from_spec(cls, spec: "ExecutorSpec", workdir: Path | None = None) -> "Executor":
        """An executor built from the command's options (default: none of them)."""
        return cls()

    def describe(self) -> dict:
        """For manifests and logs: which executor ran a stage (never part of a key)."""
        return {"executor": self.name}

    def for_passes(self) -> "Executor":
        """The executor for a stage's light passes over score parts (statistics, cuts): this one, except
        where each map is a batch submission (Slurm), which would turn every pass into a rerun."""
        return self


# -- inline ---------------------------------------------------------------------------------------------------
class InlineExecutor(Executor):
    """Every unit in this process, one after the other (debugging, tests, a debugger's breakpoints)."""

    name = "inline"

    def imap(self, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        task.setup()
        for i, unit in enumerate(units):
            yield i, task.run(unit)


# -- local process pool --------------------------------------------------------------------------------------
_TASK: Task | None = None  # the forked workers' task (inherited) or the spawned workers' (unpickled once)
_SET_UP = False  # in a worker: whether _TASK ran setup()


def _run_in_worker(unit: Any) -> Any:
    global _SET_UP
    assert _TASK is not None
    if not _SET_UP:
        _TASK.setup()
        _SET_UP = True
    return _TASK.run(unit)


def _init_worker(parent: int, pickled_task: bytes | None) -> None:
    global _TASK, _SET_UP
    _SET_UP = False
    _die_with_parent(parent)
    # the parent handles Ctrl-C (the terminal sends SIGINT to the whole process group) and SIGTERM, and stops
    # its workers itself: a worker that also raised would print a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # one thread per worker process: N workers on N cores must not oversubscribe (ecosystem trap 5)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")  # never import it here: that costs seconds per worker for numpy-only work
    if torch is not None:
        torch.set_num_threads(1)
    if pickled_task is not None:
        _TASK = pickle.loads(pickled_task)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies, even by SIGKILL (no cleanup code runs then)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup (_stop) still applies
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now and wait for them (their unfinished units rerun on the next attempt)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)


def cuda_initialised() -> bool:
    """Whether this process has touched CUDA (then only spawned workers can use it)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


@dataclass
class LocalExecutor(Executor):
    """A process pool on this machine: ``workers`` processes (one unit at a time in this process when 1).

    Workers are forked, so plugins registered in-process (tests, notebooks) reach them without pickling,
    unless ``start_method`` says otherwise or CUDA is initialised in this process (then ``spawn``: the task is
    pickled once per worker).  Each worker runs one thread, dies with this process (``PR_SET_PDEATHSIG``), and
    is killed when a unit fails or this process is interrupted.
    """

    workers: int = 1
    start_method: str | None = None
    name: ClassVar[str] = "local"

    def method(self, task: Task | None = None) -> str:
        spawn = cuda_initialised() or (task is not None and task.spawn)
        return self.start_method or ("spawn" if spawn else "fork")

    @classmethod
    def from_spec(cls, spec: "ExecutorSpec", workdir: Path | None = None) -> "LocalExecutor":
        return cls(spec.workers)

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}

    def imap(self, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        global _TASK
        if self.workers <= 1 or len(units) <= 1:
            yield from InlineExecutor().imap(task, units)
            return
        method = self.method(task)
        _TASK = task if method == "fork" else None
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(units)),
                                   mp_context=multiprocessing.get_context(method), initializer=_init_worker,
                                   initargs=(os.getpid(), None if method == "fork" else pickle.dumps(task)))
        try:
            futures = {pool.submit(_run_in_worker, unit): i for i, unit in enumerate(units)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            _stop(pool)  # an error, Ctrl-C, SIGTERM or an abandoned generator: no worker may outlive this call
            raise
        finally:
            _TASK = None
        pool.shutdown(wait=True)


def run_units(work: Callable[[Any], Any], units: Iterable[Any], workers: int = 1, desc: str = "",
              progress: bool = True) -> list[Any]:
    """``work`` over ``units`` on forked local workers (or in-process for one), results in unit order."""
    return LocalExecutor(workers, start_method="fork").map(FunctionTask(work), units, desc, progress)


# -- choosing one -------------------------------------------------------------------------------------------
EXECUTORS = ("inline", "local", "ray", "slurm")


@dataclass(frozen=True)
class ExecutorSpec:
    """What ``--executor``, ``--workers``, ``--ray-address``, ``--submit`` and the Slurm options ask for.

    Resolved once where a command starts (:func:`make_executor`) and passed down as an :class:`Executor`.
    """

    name: str = "local"
    workers: int = 1
    ray_address: str | None = None
    submit: bool = False
    slurm_options: tuple[str, ...] = field(default_factory=tuple)


class ExecutorError(FilterbenchError):
    """An unknown executor, or one whose optional extra is not installed."""


def make_executor(spec: ExecutorSpec | None = None, *, workdir: Path | None = None, plugins: Any = None) -> Executor:
    """The executor ``spec`` names: one of the harness's four, else one a plugin registered
    (``register_executors``); fails in one line for an unknown name or a missing extra."""
    spec = spec or ExecutorSpec()
    builtin = _builtin(spec.name)
    if builtin is not None:
        return builtin.from_spec(spec, workdir)
    from filterbench.harness.manager import get_plugins

    registry = (plugins or get_plugins()).executors
    if spec.name in registry:
        return registry.get(spec.name).from_spec(spec, workdir)
    known = [*EXECUTORS, *registry.names()]
    raise ExecutorError(f"unknown executor {spec.name!r}{did_you_mean(spec.name, known)} "
                        f"(choose one of {', '.join(known)})")


def _builtin(name: str) -> type[Executor] | None:
    if name == "ray":
        from filterbench.harness.ray_executor import RayExecutor

        return RayExecutor
    if name == "slurm":
        from filterbench.harness.slurm import SlurmExecutor

        return SlurmExecutor
    return {"inline": InlineExecutor, "local": LocalExecutor}.get(name)


def unit_token() -> str:
    """A fresh id for one map call (Ray workers cache a task's setup under it)."""
    return uuid.uuid4().hex
