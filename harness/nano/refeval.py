"""Zero-shot accuracy of the reference models on the nano suite, through the evaluation package.

``evaluate_checkpoint`` runs clip_benchmark's own webdataset loader and metrics on every task of
``tasklists/nano_v1.yaml`` and aggregates them with DataComp's formulas (groups + unweighted average).  Its
results file goes to a temporary folder: only the main metrics and headline scores enter the manifest, which
must stay byte-reproducible.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from filterbench.harness.nano import evalsuite


def evaluate_references(models: dict[str, tuple[str, Path]], evalsets_dir: Path, workers: int = 2) -> dict:
    """:func:`evaluate_reference` of several ``role -> (model name, checkpoint)``, in parallel threads (each
    forward pass runs single-threaded and releases the GIL, so results do not depend on the threading)."""
    from filterbench.harness.evaluation.patches import apply_clip_benchmark_patches
    from filterbench.harness.nano.refmodels import register_models

    register_models()
    apply_clip_benchmark_patches()  # once, before the threads (it swaps a module attribute)
    with _quiet(), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {role: pool.submit(evaluate_reference, name, path, evalsets_dir)
                   for role, (name, path) in models.items()}
        return {role: future.result() for role, future in futures.items()}


def evaluate_reference(model_name: str, checkpoint: Path, evalsets_dir: Path) -> dict:
    """``{"tasks": {key: {"value", "chance", "main_metric"}}, "scores": {group: value}}`` of one model."""
    from filterbench.harness.evaluation.evaluator import evaluate_checkpoint
    from filterbench.harness.nano.refmodels import register_models

    register_models()
    with tempfile.TemporaryDirectory(prefix="nano-eval-") as out:
        run = evaluate_checkpoint(model_name, checkpoint, evalsets_dir, evalsuite.TASKLIST_PATH, out,
                                  device="cpu", batch_size=256)
    if run.missing_evalsets:
        raise RuntimeError(f"nano eval sets missing under {evalsets_dir}: {run.missing_evalsets}")
    tasks = {}
    for task in evalsuite.TASKS:
        row = run.summary["tasks"][task.key]
        tasks[task.key] = {"value": round(float(row["main_metric"]), 6), "chance": evalsuite.chance(task),
                           "main_metric": "mean_recall@1" if task.retrieval else "acc1"}
    return {"tasks": tasks, "scores": {k: round(float(v), 6) for k, v in run.summary["scores"].items()}}


@contextlib.contextmanager
def _quiet():
    """clip_benchmark draws progress bars and webdataset warns about shard shuffling: keep build logs readable."""
    logger = logging.getLogger("filterbench.harness.evaluation.evaluator")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
