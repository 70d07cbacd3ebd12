"""Checking that every part of a world is present, each problem as one line naming the part and the file.

Presence, not content: a pool needs ``metadata/`` with parquet files, an ``.npz`` sidecar beside each and
``shards/`` with tar files (``filterbench pool check`` reads them); the eval-set folder needs every task of the
task list (its optional extras aside) in DataComp's layout (``wds_<task>_test/test/nshards.txt`` and the tars
it names, plus class names and templates for classification); each named input and the oracle must exist.
"""

from __future__ import annotations

from pathlib import Path

from filterbench.harness.worlds import World


def world_problems(world: World, pool: bool = True, images: bool = True, evaluation: bool = True) -> list[str]:
    """Every missing part of ``world``, one line each (empty when complete).

    Args:
        world: the opened world.
        pool: check the pool (False for a command that reads none, such as ``eval``).
        images: also check the pool's image shards (False for runs that only score and sample).
        evaluation: check the eval sets and task list (False for runs that stop before the eval stage).
    """
    problems = []
    if pool:
        problems += pool_problems(world.pool, images) if world.pool is not None else ["pool: none given"]
    if evaluation:
        problems += evalset_problems(world.evalsets, world.tasklist)
    for role, path in sorted(world.inputs.items()):
        if not Path(path).exists():
            problems.append(f"input {role}: {path} does not exist")
    if world.oracle is not None and not any(Path(world.oracle).glob("*.parquet")):
        problems.append(f"oracle: no *.parquet in {world.oracle}")
    return [f"world {world.name}: {problem}" for problem in problems]


def pool_problems(pool: Path, images: bool = True) -> list[str]:
    """What a pool folder lacks: ``metadata/*.parquet``, a sidecar per parquet, ``shards/*.tar`` (``images``)."""
    pool = Path(pool)
    if not pool.is_dir():
        return [f"pool: {pool} is not a folder"]
    parquets = sorted((pool / "metadata").glob("*.parquet"))
    if not parquets:
        return [f"pool: no metadata/*.parquet in {pool}"]
    problems = [f"pool: {p.with_suffix('.npz')} missing (the sidecar of {p.name})"
                for p in parquets if not p.with_suffix(".npz").is_file()]
    if images and not any((pool / "shards").glob("*.tar")):
        problems.append(f"pool: no shards/*.tar in {pool}")
    return problems


def evalset_problems(evalsets: Path | None, tasklist: str | None) -> list[str]:
    """What the eval-set folder lacks for the task list (its optional extras may be absent)."""
    from filterbench.harness.errors import FilterbenchError
    from filterbench.harness.evaluation.evalsets import evalset_problem
    from filterbench.harness.evaluation.tasklist import load_tasklist

    if evalsets is None:
        return ["evalsets: none given (pass --evalsets DIR)"]
    if not Path(evalsets).is_dir():
        return [f"evalsets: {evalsets} is not a folder"]
    try:
        tasks = load_tasklist(tasklist or "datacomp_v1")
    except FilterbenchError as exc:
        return [f"tasklist: {exc}"]
    problems = []
    for task in tasks.tasks:
        folder = Path(evalsets) / task.folder
        problem = evalset_problem(folder, task.evaluator)
        if problem is not None:
            problems.append(f"evalsets: {folder} {problem} (task {task.key})" if problem == "missing"
                            else f"evalsets: task {task.key}: {problem}")
    return problems
