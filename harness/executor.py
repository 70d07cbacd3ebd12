"""Running independent units of work (shards) on a local process pool.

Outputs never depend on the worker count: each unit gets its own seeded generator derived from its name, and
results are assembled in pool order whatever order units finish in.  Workers are forked so that plugins
registered in-process (tests, notebooks) are available to them without pickling.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable

from tqdm import tqdm

_WORK: Callable[[Any], Any] | None = None


def _call(unit: Any) -> Any:
    assert _WORK is not None
    return _WORK(unit)


def _init_worker() -> None:
    # one thread per worker process: N workers on N cores must not oversubscribe (ecosystem trap 5)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch = sys.modules.get("torch")  # never import it here: that costs seconds per worker for numpy-only work
    if torch is not None:
        torch.set_num_threads(1)


def run_units(work: Callable[[Any], Any], units: Iterable[Any], workers: int = 1, desc: str = "",
              progress: bool = True) -> list[Any]:
    """Apply ``work`` to every unit, in-process (workers <= 1) or on ``workers`` forked processes.

    Returns the results in the order of ``units``.  The first exception raised by a unit is re-raised after
    the pool shuts down; units that finished before it keep their outputs (they are resumable).
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
        with ProcessPoolExecutor(max_workers=min(workers, len(units)), mp_context=context,
                                 initializer=_init_worker) as pool:
            futures = {pool.submit(_call, unit): i for i, unit in enumerate(units)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
        return results
    finally:
        _WORK = None
        bar.close()
