"""The Slurm executor: the same units as an sbatch job array, with no daemon; ``filterbench run-unit`` runs them.

``--executor slurm`` plans a map (the task, pickled, and its units) into a *plan folder* named by the digest of
both, writes ``array.sbatch`` there and, with ``--submit``, submits it; the command then stops with a
:class:`~filterbench.harness.executor.Deferred` message (exit 0).  Each array element runs a contiguous slice of
the units through ``filterbench run-unit PLAN --element $SLURM_ARRAY_TASK_ID``: it sets the task up once and
writes each unit's result to ``results/<index>.pkl`` (temporary name, then rename).  Units are idempotent
(deterministic outputs, committed atomically, finished ones skipped), so a requeued or repeated element is
harmless.  Rerunning the original command finds every result, collects them and completes the stage; a later
map of the same stage (the sample stage's passes) plans its own array the same way.

Elements are capped at :data:`MAX_ARRAY_SIZE` (Slurm's default ``MaxArraySize`` is 1001) by giving each element
several units.  Every node must see the work directory at the same path.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

from filterbench.harness.atomic import write_bytes_atomic
from filterbench.harness.errors import FilterbenchError
from filterbench.harness.executor import Deferred, Executor, InlineExecutor, Task

MAX_ARRAY_SIZE = 1000
PLAN = "plan.pkl"
SCRIPT = "array.sbatch"


class PlanError(FilterbenchError):
    """A plan folder or element that run-unit cannot use."""


@dataclass
class SlurmExecutor(Executor):
    """Writes (and with ``submit`` submits) one sbatch array per map; results come back through files."""

    folder: Path
    submit: bool = False
    sbatch_options: tuple[str, ...] = field(default_factory=tuple)
    max_array_size: int = MAX_ARRAY_SIZE
    name: ClassVar[str] = "slurm"

    @classmethod
    def from_spec(cls, spec, workdir: Path | None = None) -> "SlurmExecutor":
        """Plans go to ``<workdir>/slurm/`` (the current folder's when no workdir is known)."""
        folder = (Path(workdir) if workdir else Path.cwd()) / "slurm"
        return cls(folder, submit=spec.submit, sbatch_options=spec.slurm_options)

    def for_passes(self) -> Executor:
        """Passes over score parts read one float column per shard: the driver runs them itself."""
        return InlineExecutor()

    def imap(self, task: Task, units: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        plan = write_plan(self.folder, task, units)
        results = collect_results(plan, len(units))
        if results is None:
            self._defer(plan, task, len(units))
        yield from enumerate(results)

    def _defer(self, plan: Path, task: Task, units: int) -> None:
        elements = element_count(units, self.max_array_size)
        script = plan / SCRIPT
        write_bytes_atomic(script, array_script(plan, task, elements, self.sbatch_options).encode())
        how = f"submit it with: sbatch {script}"
        if self.submit:
            job = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
            if job.returncode != 0:
                raise PlanError(f"sbatch {script} failed: {job.stderr.strip() or job.stdout.strip()}")
            how = f"submitted as job {job.stdout.strip().split(';')[0]}"
        raise Deferred(f"slurm: {units} unit(s) in {elements} array element(s), script {script}; {how}; when "
                       "the array has finished, rerun this command to go on")


def write_plan(folder: Path, task: Task, units: Sequence[Any]) -> Path:
    """The plan folder of this (task, units), named by the digest of both and written once (a rerun of the
    same command finds the same folder)."""
    payload = pickle.dumps({"task": task, "units": list(units)}, protocol=4)
    plan = Path(folder) / f"{type(task).__name__.lower()}-{hashlib.sha256(payload).hexdigest()[:16]}"
    if not (plan / PLAN).is_file():
        (plan / "results").mkdir(parents=True, exist_ok=True)
        (plan / "logs").mkdir(exist_ok=True)
        write_bytes_atomic(plan / PLAN, payload)
    return plan


def _result_path(plan: Path, index: int) -> Path:
    return Path(plan) / "results" / f"{index}.pkl"


def collect_results(plan: Path, units: int) -> list[Any] | None:
    """Every unit's result in order, or None while one is missing."""
    paths = [_result_path(plan, i) for i in range(units)]
    if not all(p.is_file() for p in paths):
        return None
    return [pickle.loads(p.read_bytes()) for p in paths]


def element_count(units: int, max_array_size: int = MAX_ARRAY_SIZE) -> int:
    return max(1, min(units, max_array_size))


def element_slice(element: int, units: int, elements: int) -> range:
    """The units of array element ``element``: contiguous, sizes differing by at most one."""
    if not 0 <= element < elements:
        raise PlanError(f"array element {element} is outside 0..{elements - 1}")
    base, extra = divmod(units, elements)
    start = element * base + min(element, extra)
    return range(start, start + base + (1 if element < extra else 0))


def array_script(plan: Path, task: Task, elements: int, options: Sequence[str] = ()) -> str:
    """The sbatch array script: element i runs its slice of units through ``filterbench run-unit``."""
    r = task.resources
    sbatch = [f"--job-name=fb-{plan.name}", f"--array=0-{elements - 1}", f"--cpus-per-task={max(1, round(r.cpus))}",
              f"--output={plan}/logs/%A_%a.out", "--requeue", *([f"--mem={int(r.memory_gb * 1024)}M"]
                                                                 if r.memory_gb else [])]
    if r.gpus:
        sbatch.append(f"--gpus-per-task={max(1, round(r.gpus))}")
    command = [sys.executable, "-m", "filterbench.harness.cli", "run-unit", str(plan),
               "--elements", str(elements), "--element"]
    return "\n".join(["#!/bin/bash", *(f"#SBATCH {s}" for s in (*sbatch, *options)), "",
                      "# generated by filterbench: one slice of the plan's units per array element",
                      "set -euo pipefail", f"cd {shlex.quote(os.getcwd())}",
                      f'{shlex.join(command)} "$SLURM_ARRAY_TASK_ID"', ""])


def run_element(plan: Path, element: int, elements: int) -> list[int]:
    """Run one array element's units (skipping those with a result); returns the unit indexes it ran."""
    try:
        data = pickle.loads((Path(plan) / PLAN).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise PlanError(f"{plan}: no readable {PLAN} ({type(exc).__name__}: {exc})") from None
    task, units = data["task"], data["units"]
    todo = [i for i in element_slice(element, len(units), elements) if not _result_path(plan, i).is_file()]
    if todo:
        task.setup()
    for i in todo:
        write_bytes_atomic(_result_path(plan, i), pickle.dumps(task.run(units[i]), protocol=4))
    return todo
