"""The eval stage: a trained checkpoint on a frozen task list, through clip-benchmark, resumable per task.

Output: ``eval/<label>-<key>/eval_results.jsonl`` (DataComp's line format, one line per task, appended as tasks
finish) and ``summary.json`` (groups, average, missing tasks).  The key hashes the train key, the task list's
sha256, the aggregation version, the evaluator version and the eval sets' identity (task folders with their file
names and sizes), so a changed eval set or task list never reuses old numbers.
"""

from __future__ import annotations

from pathlib import Path

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.executor import Executor
from filterbench.harness.hashing import content_key
from filterbench.harness.provenance import CostMeter
from filterbench.harness.store import Artifact, Store

EVALUATOR_VERSION = 1


def evalsets_identity(evalsets: Path, folders: list[str]) -> dict:
    """Names and sizes of every file of the task folders present (hashing GBs of images would be slow)."""
    identity = {}
    for folder in sorted(folders):
        path = evalsets / folder
        if path.is_dir():
            files = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
            identity[folder] = content_key(files)
    return identity


def checkpoint_of(train: Artifact) -> tuple[str, Path]:
    """(open_clip model name, checkpoint path) of a train artifact."""
    manifest = train.manifest
    checkpoint = train.path / manifest.get("checkpoint", "checkpoints/epoch_latest.pt")
    if not checkpoint.is_file():
        raise FilterbenchError(f"{train.path}: no checkpoint at {checkpoint.name}")
    return manifest["model"], checkpoint


def run_eval(store: Store, train: Artifact, evalsets: Path | None, tasklist: str | Path | None = None,
             device: str = "cpu", progress: bool = False, executor: Executor | None = None) -> Artifact:
    """Evaluate a train artifact's final checkpoint; reuse a completed eval with the same key (``progress``: a
    bar over the tasks; ``executor``: where the tasks run, one unit per task, default this process)."""
    from filterbench.harness.evaluation.api import AGGREGATION_VERSION, evaluate_checkpoint, load_tasklist
    from filterbench.harness.training.models import register_model_configs

    if evalsets is None:
        raise FilterbenchError("no eval sets: pass --evalsets DIR (DataComp's layout; see docs/evaluation.md)")
    tasks = load_tasklist(tasklist or "datacomp_v1")
    inputs = {"stage": "eval", "train": train.key, "tasklist": {"name": tasks.name, "sha256": tasks.sha256},
              "aggregation_version": AGGREGATION_VERSION, "evaluator_version": EVALUATOR_VERSION,
              "evalsets": evalsets_identity(Path(evalsets), [t.folder for t in (*tasks.tasks, *tasks.extras)])}
    key = store.key_for(inputs)
    label = train.path.name.rsplit("-", 1)[0]
    done = store.get("eval", label, key)
    if done is not None:
        return done
    register_model_configs()
    store.consume(train)
    model, checkpoint = checkpoint_of(train)
    with store.build("eval", label, key, inputs) as building:
        if building.done is not None:
            return building.done
        with CostMeter(used_gpu=device.startswith("cuda")) as cost:
            run = evaluate_checkpoint(model, checkpoint, evalsets, tasks, building.dir, device=device,
                                      progress=progress, executor=executor)
        building.add_output("eval_results.jsonl")
        building.add_output("summary.json")
        return building.finish({"train_key": train.key, "tasklist": inputs["tasklist"], "summary": run.summary,
                                "missing_evalsets": run.missing_evalsets, "task_seconds": run.seconds,
                                "cost": cost.as_dict()})
