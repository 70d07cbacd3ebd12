"""The Ray executor (optional extra ``filterbench[ray]``): CPU units as Ray tasks, GPU units on an actor pool.

- CPU tasks (``Resources.gpus == 0``): one Ray task per unit with ``num_cpus`` and ``memory`` from the task's
  declared resources.  Ray retries a unit whose worker or node died (``max_retries``); an exception raised by
  the unit itself is retried only when it is transient (:data:`~filterbench.harness.executor.TRANSIENT_ERRORS`),
  anything else stops the map and reaches the command's one-line error.  A worker process sets a task up once
  and keeps it for the following units of the same map (cached under the map's token).
- GPU tasks (``Resources.gpus > 0``): an actor pool, each actor holding the task set up once (the model loaded
  once) with ``num_gpus`` (fractions pack several actors on one GPU; Ray sets ``CUDA_VISIBLE_DEVICES``).  The
  driver hands each idle actor the next unit; a dead actor is restarted and its unit retried.  On a cluster
  without GPUs the actors ask for CPUs only, and a warning says so.

The driver only ever holds paths, the task (small) and the units' small results; workers read and write the
store themselves, so every node must see the work directory at the same path (a shared filesystem).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator, Sequence

from filterbench.harness.executor import TRANSIENT_ERRORS, Executor, ExecutorError, Task, unit_token

log = logging.getLogger("filterbench.ray")
MAX_RETRIES = 3
MIN_IN_FLIGHT = 64  # units submitted ahead of the results (at least 4 per cluster CPU)
_READY: dict[str, Task] = {}  # per Ray worker process: the tasks already set up, by map token


def import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("the ray executor needs the optional extra: pip install 'filterbench[ray]'") from None
    return ray


def _run_cached(token: str, task: Task, unit: Any) -> Any:
    ready = _READY.get(token)
    if ready is None:
        task.setup()
        _READY.clear()  # one map's task at a time per worker: a model from an earlier stage is released
        _READY[token] = ready = task
    return ready.run(unit)


class _UnitActor:
    """Holds one set-up task (a loaded model) and runs the units the driver hands it."""

    def __init__(self, task: Task):
        self.task = task
        task.setup()

    def run(self, unit: Any) -> Any:
        return self.task.run(unit)


@dataclass
class RayExecutor(Executor):
    """Units on a Ray cluster: ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or, when None, a
    cluster of this machine started on first use (``workers`` CPUs, 0 = all).  Stays connected for the
    process's later stages."""

    address: str | None = None
    workers: int = 0
    name: ClassVar[str] = "ray"

    @classmethod
    def from_spec(cls, spec, workdir=None) -> "RayExecutor":
        return cls(address=spec.ray_address, workers=spec.workers)

    def describe(self) -> dict:
        return {"executor": self.name, "address": self.address or "local"}

    def connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            options = {"address": self.address} if self.address else \
                {"num_cpus": self.workers or None, "include_dashboard": False}
            # the driver draws the progress bar; libraries' bars inside workers (clip_benchmark's) would be
            # relayed to the driver line by line
            ray.init(log_to_driver=True, logging_level=logging.WARNING,
                     runtime_env={"env_vars": {"TQDM_DISABLE": "1"}}, **options)
        return ray

    def imap(self, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        ray = self.connect()
        if task.resources.gpus > 0:
            yield from self._actor_pool(ray, task, units)
        else:
            yield from self._tasks(ray, task, units)

    def _tasks(self, ray, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        remote = ray.remote(_run_cached).options(num_cpus=task.resources.cpus, memory=_memory(task.resources),
                                                 max_retries=MAX_RETRIES, retry_exceptions=list(TRANSIENT_ERRORS))
        token, shared = unit_token(), ray.put(task)
        window = max(MIN_IN_FLIGHT, 4 * int(ray.cluster_resources().get("CPU", 1)))
        # a bounded window: 1.28M units never sit in the driver; a failure cancels the units in flight
        yield from _stream(ray, units, range(window), lambda _, unit: remote.remote(token, shared, unit),
                           abort=lambda refs: _cancel(ray, refs))

    def _actor_pool(self, ray, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        resources, gpus = task.resources, ray.cluster_resources().get("GPU", 0.0)
        num_gpus = resources.gpus if gpus else 0.0
        if not gpus:
            log.warning("the Ray cluster has no GPUs: this task's actors run on CPUs")
        size = _pool_size(len(units), gpus / num_gpus if num_gpus else ray.cluster_resources().get("CPU", 1)
                          / max(resources.cpus, 1e-3))
        actor = ray.remote(_UnitActor).options(num_cpus=resources.cpus, num_gpus=num_gpus,
                                               memory=_memory(resources), max_restarts=MAX_RETRIES,
                                               max_task_retries=MAX_RETRIES)
        actors = [actor.remote(task) for _ in range(size)]  # (a small task travels inline, not as a reference)
        try:  # each idle actor gets the next unit, so a slow unit never holds up the others' queue
            yield from _stream(ray, units, actors, lambda a, unit: a.run.remote(unit))
        finally:
            for a in actors:
                ray.kill(a)  # also stops their units in flight (actor tasks cannot be force-cancelled)


def _stream(ray, units: Sequence[Any], slots: Iterable[Any], submit, abort=None) -> Iterator[tuple[int, Any]]:
    """Keep one unit in flight per slot (a window position, an actor); a finished unit's slot takes the next
    unit.  Yields ``(index, result)`` as units finish; on a failure or an abandoned generator, ``abort`` gets
    the references still in flight."""
    queue = list(enumerate(units))[::-1]
    pending: dict = {}

    def start(slot) -> None:
        if queue:
            i, unit = queue.pop()
            pending[submit(slot, unit)] = (i, slot)

    try:
        for slot in slots:
            start(slot)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i, slot = pending.pop(ref)
            result = _result(ray, ref)
            start(slot)
            yield i, result
    except BaseException:
        if abort is not None:
            abort(list(pending))
        raise


def _cancel(ray, refs: list) -> None:
    for ref in refs:
        ray.cancel(ref, force=True)


def _memory(resources) -> int | None:
    return int(resources.memory_gb * 2**30) or None


def _pool_size(units: int, capacity: float) -> int:
    return max(1, min(units, math.floor(capacity + 1e-9)))


def _result(ray, ref) -> Any:
    """The unit's result; a unit's own exception is re-raised as itself (the CLI's one-line errors know its
    type), not wrapped in Ray's error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
