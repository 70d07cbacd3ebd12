"""The train stage: a selection + a fixed scale -> an open_clip checkpoint, content-addressed and resumable.

Output: ``train/<selection label>-<scale>-<key>/`` with ``checkpoints/epoch_latest.pt`` and
``checkpoints/epoch_<segments>.pt`` (open_clip_train's own files), ``argv.json`` (the exact argv given to
``open_clip_train.main.main``), ``launch.json``, open_clip's ``out.log`` and ``params.txt``,
``expected_counts.npy`` (planned modes: segments x pool feed counts), ``fed/`` (when fed uids were counted) and
``manifest.json`` with the feed accounting, throughput and cost.  The key hashes the selection key, the whole
scale row (after overrides), the seed, the backend and :data:`TRAIN_RECIPE_VERSION`; the number of processes
and the launcher do not enter it.

Resume: the stage builds in the store's stable partial folder, which is also open_clip's ``--logs/--name``
folder, and always passes ``--resume latest``: a rerun after a crash re-plans (deterministically), writes only
the missing shards and continues from ``checkpoints/epoch_latest.pt``.  A finished artifact is returned as is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from filterbench.harness.provenance import CostMeter
from filterbench.harness.scales import ResolvedScale, Scale
from filterbench.harness.seeding import derive_rng
from filterbench.harness.stages.pool import pool_shards_dir
from filterbench.harness.stages.sample import load_counts
from filterbench.harness.store import Artifact, Building, Store, write_json_atomic
from filterbench.harness.training import resharder
from filterbench.harness.training.argv import build_argv, per_rank_batch
from filterbench.harness.training.distributed import (
    SlurmOptions,
    run_command,
    slurm_script,
    torchrun_command,
    training_env,
)
from filterbench.harness.training.launcher import ATTEMPTS, DONE_MARKER, LaunchSpec, launch_inprocess
from filterbench.harness.training.plan import PLANNED_MODES, FeedBudget, TrainError, build_plan, feed_budget

#: bump on any change that alters a training's bytes (it enters the key).  2: subset mode's sample shuffle is
#: seeded (training/shuffle.py); version-1 subset trainings were one unseeded draw each and are not reused.
TRAIN_RECIPE_VERSION = 2
log = logging.getLogger("filterbench.train")
LAUNCHERS = ("inprocess", "torchrun", "slurm")
COSTS = "costs.jsonl"
PARALLEL_MIN_SAMPLES = 50_000


def train_inputs(selection: Artifact, scale: Scale, seed: int) -> dict:
    from importlib.metadata import version

    return {"stage": "train", "recipe": TRAIN_RECIPE_VERSION, "selection": selection.key,
            "mode": selection.manifest["mode"], "scale": scale.as_dict(), "seed": seed,
            "model_config": _our_model_config(scale.model),
            "backend": {"name": "open_clip_train", "version": version("open_clip_torch")}}


def _our_model_config(model: str) -> dict | None:
    """The JSON of a model config this project ships (its name alone would let an edited config reuse old
    checkpoints); None for open_clip's own models, which the backend version above pins."""
    from filterbench.harness.training.models import MODEL_CONFIG_DIR

    path = MODEL_CONFIG_DIR / f"{model}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_train(store: Store, selection: str | Artifact, scale: ResolvedScale, *, seed: int = 0, nproc: int = 1, launcher: str = "inprocess", workers: int | None = None,
              count_fed: bool = False, keep_data: bool = False, slurm: SlurmOptions | None = None,
              stop_at_epoch: int | None = None, progress: bool = False) -> Artifact | Path:
    """Train the fixed recipe of ``scale`` on ``selection``; reuse a completed artifact with the same key.

    Args:
        selection: a selection artifact, or its key, key prefix or folder.
        scale: the scale row to train, with its overrides and ``official`` flag
            (:func:`filterbench.harness.scales.resolve_scale`); trained and reported as given.
        nproc: processes (``torchrun``), or tasks per node (``slurm``).
        launcher: ``inprocess`` (one process, this one), ``torchrun`` or ``slurm`` (writes a script).
        workers: resharder processes (default: up to 4, one per core).
        count_fed: record every uid fed to the model under ``fed/`` (instrumentation for tests).
        keep_data: keep the resharded shards in the artifact (``data/``); they are deleted by default.
        slurm: options of the generated SLURM script (``launcher="slurm"``).
        stop_at_epoch: tests only: interrupt the training when this epoch would start.
        progress: show progress bars (resharding, and the in-process training's batches, with an ETA).

    Returns:
        The train artifact; for ``launcher="slurm"`` the path of the script to submit with ``sbatch``.
    """
    if launcher not in LAUNCHERS:
        raise TrainError(f"unknown launcher {launcher!r} (expected one of {', '.join(LAUNCHERS)})")
    if launcher == "inprocess" and nproc != 1:
        raise TrainError("the in-process launcher runs one process; use --launcher torchrun for --nproc > 1")
    selection = selection if isinstance(selection, Artifact) else store.find(selection, kind="selections")
    store.consume(selection)
    if not isinstance(scale, ResolvedScale):
        raise TrainError(f"run_train needs a resolved scale (filterbench.harness.scales.resolve_scale), "
                         f"not {scale!r}")
    scale_row = scale.row
    budget = feed_budget(scale_row.samples_seen, scale_row.segments, scale_row.batch_size, scale_row.workers)
    _check_budget(selection, scale_row)
    world = slurm.world_size if launcher == "slurm" and slurm else nproc
    per_rank_batch(scale_row, world)  # fail before any work when the processes do not divide the batch
    inputs = train_inputs(selection, scale_row, seed)
    key = store.key_for(inputs)
    label = f"{selection.manifest.get('label', 'selection')}-{scale_row.name}"
    done = store.get("train", label, key)
    if done is not None:
        if count_fed and not done.manifest.get("fed_counted"):
            log.warning("%s was trained without fed-uid counting; it is reused as is (no fed/ records)", done.path)
        return done
    context = {"selection": selection, "scale": scale_row, "official": scale.official,
               "overrides": scale.overrides_dict(),
               "seed": seed, "budget": budget, "world": world, "launcher": launcher}
    with store.build("train", label, key, inputs) as building:
        if building.done is not None:
            return building.done
        if not (building.dir / DONE_MARKER).exists():
            with _cost(building, "prepare"):
                spec = _prepare(store, building, context, workers or min(4, os.cpu_count() or 1), count_fed,
                                stop_at_epoch, progress)
            if launcher == "slurm":
                return _write_slurm(store, building, context, slurm or SlurmOptions(tasks_per_node=nproc))
            with _cost(building, "train", gpu=_uses_gpu(scale_row)):
                _launch(building, spec, launcher, nproc, progress)
        return _finish(building, context, keep_data)


def _check_budget(selection: Artifact, scale: Scale) -> None:
    """A multiset or schedule was allocated for one budget; training it on another would pad or trim it."""
    if selection.manifest["mode"] not in PLANNED_MODES:
        return
    sel = selection.manifest.get("budget", {})
    if sel.get("samples_seen") != scale.samples_seen or sel.get("segments") != scale.segments:
        raise TrainError(f"selection {selection.path.name} was sampled for samples_seen={sel.get('samples_seen')}, "
                         f"segments={sel.get('segments')} but scale {scale.name!r} trains samples_seen="
                         f"{scale.samples_seen}, segments={scale.segments}; sample again with this scale")


def _uses_gpu(scale: Scale) -> bool:
    if scale.cpu:
        return False
    import torch

    return torch.cuda.is_available()


@contextlib.contextmanager
def _cost(building: Building, phase: str, gpu: bool = False):
    """Append this phase's cost to ``costs.jsonl`` even when it fails (an interrupted attempt still cost)."""
    meter = CostMeter(used_gpu=gpu)
    try:
        with meter:
            yield meter
    finally:
        with open(building.dir / COSTS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"phase": phase, **meter.as_dict()}) + "\n")


# -- preparation: plan, reshard, launch spec --------------------------------------------------------------------
def _prepare(store: Store, building: Building, ctx: dict, workers: int, count_fed: bool,
             stop_at_epoch: int | None, progress: bool) -> LaunchSpec:
    selection, budget = ctx["selection"], ctx["budget"]
    pool_artifact = store.find(selection.manifest["pool_key"], kind="pools")
    store.consume(pool_artifact)
    pool_uids = np.load(pool_artifact.path / "uids.npy", allow_pickle=False)
    shards_dir = pool_shards_dir(pool_artifact)
    tars = resharder.index_pool(building, shards_dir, _parallel(workers, pool_uids.size), progress)
    table = resharder.load_table(building, tars, pool_uids)
    plan = build_plan(selection.manifest["mode"], load_counts(selection), table.available(), budget,
                      derive_rng(ctx["seed"], "train", "plan"))
    layout = resharder.write_shards(building, table, pool_uids, plan, resharder.plan_units(plan),
                                    _parallel(workers, sum(s.size for s in plan.segments)), progress)
    write_json_atomic(building.dir / "plan.json", {**plan.stats, "pool_tars": len(tars),
                                                   "shards": sum(len(s["shards"]) for s in layout["segments"])})
    if plan.expected is not None:
        np.save(building.dir / "expected_counts.npy", plan.expected)
    spec = _launch_spec(building, ctx, layout, count_fed, stop_at_epoch)
    spec.save(building.dir / "launch.json")
    write_json_atomic(building.dir / "argv.json", spec.argv)
    return spec


def _parallel(workers: int, samples: int) -> int:
    """Worker processes for ``samples`` of resharding work: one below :data:`PARALLEL_MIN_SAMPLES`.

    The executor's worker initializer imports torch (2-5 s a process here), more than a nano-xs reshard takes
    in one process (about 1 s for 8,192 pool samples); when going parallel, torch is imported once in this
    process first so that the forked workers inherit it.
    """
    if workers <= 1 or samples < PARALLEL_MIN_SAMPLES:
        return 1
    import torch  # noqa: F401

    return workers


def _launch_spec(building: Building, ctx: dict, layout: dict, count_fed: bool,
                 stop_at_epoch: int | None) -> LaunchSpec:
    scale, budget, planned = ctx["scale"], ctx["budget"], ctx["selection"].manifest["mode"] in PLANNED_MODES
    data_dir = building.dir / "data"
    device = "cpu" if scale.cpu or (ctx["launcher"] != "slurm" and not _uses_gpu(scale)) else None
    argv = build_argv(scale, train_data=resharder.shard_pattern(data_dir, layout, None if planned else 0),
                      samples_per_segment=budget.samples_per_segment if planned
                      else scale.samples_seen // scale.segments,
                      logs=str(building.dir.parent), name=building.dir.name, seed=ctx["seed"],
                      world_size=ctx["world"], resampled=not planned, device=device)
    return LaunchSpec(argv=argv, run_dir=str(building.dir), epochs=scale.segments,
                      data_dir=str(data_dir) if planned else None, batches=budget.batches_per_segment,
                      fed_dir=str(building.dir / "fed") if count_fed else None,
                      threads=_cpu_threads(scale, ctx["world"]) if device == "cpu" else None,
                      stop_at_epoch=stop_at_epoch,
                      world_size=ctx["world"], launcher=ctx["launcher"])


def _cpu_threads(scale, world: int) -> int:
    """The scale's thread count for one process; one per rank under DDP (2 ranks x 2 threads would oversubscribe
    a 2-core machine, ecosystem.md trap 5)."""
    return scale.cpu_threads if world == 1 else 1


# -- launching ----------------------------------------------------------------------------------------------------
def _launch(building: Building, spec: LaunchSpec, launcher: str, nproc: int, progress: bool = False) -> None:
    if launcher == "torchrun":
        run_command(torchrun_command(building.dir / "launch.json", nproc), building.dir / "launcher.log",
                    spec.threads)
    else:
        with _environment(training_env(spec.threads)):
            code = launch_inprocess(spec, progress)
        if code != 0:
            raise TrainError(f"training failed; see {building.dir / 'out.log'}")
    if not (building.dir / DONE_MARKER).exists():
        raise TrainError(f"training ended without its final checkpoint; see {building.dir / 'out.log'}")


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _write_slurm(store: Store, building: Building, ctx: dict, options: SlurmOptions) -> Path:
    import sys

    scale = ctx["scale"]
    finalize = [sys.executable, "-m", "filterbench.harness.cli.train_cmds", ctx["selection"].key,
                "--scale", scale.name, "--seed", str(ctx["seed"]), "--workdir", str(store.root.resolve())]
    for knob, value in ctx["overrides"].items():
        finalize += ["-o", f"{knob}={value}"]
    script = building.dir / "slurm.sh"
    threads = _cpu_threads(scale, ctx["world"]) if scale.cpu else None  # what the in-process launcher would use
    script.write_text(slurm_script(building.dir / "launch.json", f"fb-train-{building.key[:12]}", building.dir,
                                   finalize, options, threads=threads))
    script.chmod(0o755)
    return script


# -- completion ---------------------------------------------------------------------------------------------------
def _finish(building: Building, ctx: dict, keep_data: bool) -> Artifact:
    scale, budget = ctx["scale"], ctx["budget"]
    (building.dir / "checkpoints" / "tmp.pt").unlink(missing_ok=True)
    final = f"checkpoints/epoch_{scale.segments}.pt"
    names = ["checkpoints/epoch_latest.pt", final, "argv.json", "launch.json", "out.log", "params.txt",
             "expected_counts.npy", "plan.json"]
    for name in names:
        if (building.dir / name).is_file():
            building.add_output(name)
    if not keep_data:
        shutil.rmtree(building.dir / "data", ignore_errors=True)
    spec = json.loads((building.dir / "launch.json").read_text())
    selection = ctx["selection"]
    return building.finish({
        "mode": selection.manifest["mode"], "selection_key": selection.key,
        "pool_key": selection.manifest["pool_key"], "scale_name": scale.name, "scale": scale.as_dict(),
        "official": ctx["official"], "overrides": ctx["overrides"], "seed": ctx["seed"], "model": scale.model,
        "checkpoint": "checkpoints/epoch_latest.pt", "final_checkpoint": final,
        "world_size": spec.get("world_size", 1), "launcher": spec.get("launcher"), "argv": spec["argv"],
        "budget": _budget_record(scale, budget), "data": json.loads((building.dir / "plan.json").read_text()),
        "fed_counted": spec.get("fed_dir") is not None, "data_kept": keep_data,
        "throughput": throughput(building.dir), "cost": _sum_costs(building.dir / COSTS)})


def _budget_record(scale: Scale, budget: FeedBudget) -> dict:
    return {"samples_seen": scale.samples_seen, "segments": scale.segments, "global_batch": budget.global_batch,
            "batches_per_segment": budget.batches_per_segment, "steps": budget.steps,
            "samples_fed": budget.samples_fed}


def throughput(run_dir: Path) -> dict:
    """Samples/s over the epochs that count (the last run of each epoch), from the launcher's attempt log."""
    attempts = [json.loads(line) for line in (run_dir / ATTEMPTS).read_text().splitlines() if line.strip()] \
        if (run_dir / ATTEMPTS).exists() else []
    last: dict[int, dict] = {}
    for attempt in attempts:
        for epoch in attempt["epochs"]:
            last[epoch["epoch"]] = epoch
    samples = sum(e["samples"] for e in last.values())
    wall = sum(e["wall_s"] for e in last.values())
    return {"samples_fed": samples, "train_wall_s": round(wall, 3),
            "samples_per_s": round(samples / wall, 1) if wall else None, "attempts": len(attempts),
            "epochs": [last[e] for e in sorted(last)],
            "launch_wall_s": round(sum(a["wall_s"] for a in attempts), 3)}


def _sum_costs(path: Path) -> dict:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    phases: dict[str, dict] = {}
    for line in lines:
        total = phases.setdefault(line["phase"], {"wall_s": 0.0, "cpu_s": 0.0, "gpu_s": 0.0, "peak_rss_mb": 0.0})
        for k in ("wall_s", "cpu_s", "gpu_s"):
            total[k] = round(total[k] + line[k], 3)
        total["peak_rss_mb"] = max(total["peak_rss_mb"], line["peak_rss_mb"])
    overall = {k: round(sum(p[k] for p in phases.values()), 3) for k in ("wall_s", "cpu_s", "gpu_s")}
    overall["peak_rss_mb"] = max((p["peak_rss_mb"] for p in phases.values()), default=0.0)
    return {**phases, "total": overall, "cpu_count": os.cpu_count()}


def load_train_spec(artifact: Artifact) -> dict[str, Any]:
    """The launch spec a train artifact was trained with."""
    return json.loads((artifact.path / "launch.json").read_text())
