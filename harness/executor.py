"""Running independent units of work (shards) on a local process pool.

Outputs never depend on the worker count: each unit gets its own seeded generator derived from its name, and
results are assembled in pool order whatever order units finish in.  Workers are forked so that plugins
registered in-process (tests, notebooks) are available to them without pickling.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable

from tqdm import tqdm

_WORK: Callable[[Any], Any] | None = None
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _call(unit: Any) -> Any:
    assert _WORK is not None
    return _WORK(unit)


def _init_worker(parent: int) -> None:
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


def run_units(work: Callable[[Any], Any], units: Iterable[Any], workers: int = 1, desc: str = "",
              progress: bool = True) -> list[Any]:
    """Apply ``work`` to every unit, in-process (workers <= 1) or on ``workers`` forked processes.

    Returns the results in the order of ``units``.  The first exception raised by a unit (or a Ctrl-C or
    SIGTERM in this process) kills the other workers and is re-raised; units that finished before it keep their
    outputs (they are resumable).  Workers also die with this process when it is killed outright
    (``PR_SET_PDEATHSIG``), so none is left running as an orphan.
    """
    global _WORK
    units = list(units)
    bar = tqdm(total=len(units), desc=desc, unit="shard", disable=not progress or not units, leave=False)
    results: list[Any] = [None] * len(units)
    try:
        if workers <= 1 or len(units) <= 1:
            for i, unit in enumerate(units):
                results[i] = work(unit)
                bar.update()
            return results
        _WORK = work
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(units)), mp_context=context,
                                   initializer=_init_worker, initargs=(os.getpid(),))
        try:
            futures = {pool.submit(_call, unit): i for i, unit in enumerate(units)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
        except BaseException:
            _stop(pool)  # an error, Ctrl-C or SIGTERM: no worker may outlive this call
            raise
        pool.shutdown(wait=True)
        return results
    finally:
        _WORK = None
        bar.close()
