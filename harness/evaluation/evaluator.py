"""Evaluate a CLIP checkpoint on a task list's local eval sets, resumably, one result line per task.

Resume rule: a task whose key already has a valid line in ``out_dir/eval_results.jsonl`` is not run again.
A torn last line (crash mid-write) is truncated away and that task is recomputed.  Tasks whose eval-set
folder is missing or incomplete are reported, not written, so a later call with the data present fills
them in.  ``summary.json`` is rewritten after every call from the whole results file.
"""

from __future__ import annotations

import json
import logging
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch

from filterbench.harness.atomic import write_bytes_atomic
from filterbench.harness.contract import Resources
from filterbench.harness.errors import FilterbenchError
from filterbench.harness.executor import Executor, InlineExecutor
from filterbench.harness.executor import Task as ExecutorTask
from filterbench.harness.librarylogs import expected_random_init
from filterbench.harness.tarcheck import IncompleteTar, read_complete_tar
from filterbench.harness.evaluation import evalsets
from filterbench.harness.evaluation.aggregate import summarize
from filterbench.harness.evaluation.patches import apply_clip_benchmark_patches
from filterbench.harness.evaluation.results import RESULTS_FILENAME, append_row, make_row, repair_results
from filterbench.harness.evaluation.runners import RUNNERS, ModelBundle
from filterbench.harness.evaluation.tasklist import Task, TaskList, load_tasklist

SUMMARY_FILENAME = "summary.json"
log = logging.getLogger(__name__)


class EvaluationError(FilterbenchError):
    """A model cannot be loaded, or a task failed on its eval set."""


@dataclass
class EvalRun:
    """What one :func:`evaluate_checkpoint` call did.

    Attributes:
        results_path: ``out_dir/eval_results.jsonl``.
        summary_path: ``out_dir/summary.json``.
        summary: the summary dict written there (see :func:`~.aggregate.summarize`).
        evaluated: task keys computed by this call, in order.
        reused: task keys already present in the results file.
        missing_evalsets: task key -> reason, for tasks whose eval set is not usable under ``evalsets_dir``.
        seconds: task key -> wall time of each evaluated task.
    """

    results_path: Path
    summary_path: Path
    summary: dict[str, Any]
    evaluated: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing_evalsets: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def load_model(
    model_name: str, checkpoint_path: str | Path | None, device: str = "cpu", batch_size: int = 64
) -> ModelBundle:
    """An open_clip model with its eval transform and tokenizer.

    Args:
        model_name: an open_clip model name (built in, or registered with ``open_clip.add_model_config``).
        checkpoint_path: a checkpoint file (open_clip_train's ``{"state_dict": ...}`` or a bare state dict);
            None gives a random init (smoke tests only).  Pretrained *tags* are refused: they download.
        device: torch device string.
        batch_size: images per forward pass.
    """
    import open_clip

    if checkpoint_path is not None and not Path(checkpoint_path).is_file():
        raise EvaluationError(f"checkpoint not found: {checkpoint_path}")
    if ":" not in model_name and model_name not in open_clip.list_models():
        raise EvaluationError(
            f"unknown open_clip model {model_name!r} (register it with open_clip.add_model_config)"
        )
    device = _autocast_friendly(device)
    torch.manual_seed(0)  # DataComp seeds before creating the model; random init must be reproducible
    try:
        with expected_random_init():  # warns only without a checkpoint: a deliberate random init
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(checkpoint_path) if checkpoint_path else None, device=device
            )
    except (RuntimeError, KeyError, ValueError) as exc:
        raise EvaluationError(f"cannot load {model_name} from {checkpoint_path}: {_first_line(exc)}") from exc
    model.eval()
    return ModelBundle(model, preprocess, open_clip.get_tokenizer(model_name), device, batch_size)


def _autocast_friendly(device: str) -> str:
    """``cuda:N`` -> select GPU N and return ``cuda``: clip_benchmark passes the device string to
    ``torch.autocast``, which accepts a device type only."""
    if device.startswith("cuda:"):
        torch.cuda.set_device(int(device.split(":", 1)[1]))
        return "cuda"
    return device


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def select_tasks(tasklist: TaskList, tasks: Iterable[str] | None, include_extras: bool) -> list[Task]:
    """The tasks to consider, in task-list order (extras last); unknown keys raise naming the list.

    Extras are included when ``include_extras`` is set or when ``tasks`` names them explicitly.
    """
    if tasks is None:
        return list(tasklist.tasks) + (list(tasklist.extras) if include_extras else [])
    wanted = set(tasks)
    for key in wanted:
        tasklist.task(key)  # raises for an unknown key
    return [t for t in tasklist.tasks + tasklist.extras if t.key in wanted]


def plan(
    tasklist: TaskList,
    evalsets_dir: str | Path,
    results_path: Path,
    tasks: Iterable[str] | None = None,
    include_extras: bool = True,
) -> tuple[list[Task], list[str], dict[str, str]]:
    """(tasks to run, keys already done, missing eval sets).  Extras without data are skipped silently."""
    done = repair_results(results_path).keys()
    todo, reused, missing = [], [], {}
    extras = {t.key for t in tasklist.extras}
    for task in select_tasks(tasklist, tasks, include_extras):
        if task.key in done:
            reused.append(task.key)
            continue
        folder = Path(evalsets_dir) / task.folder
        problem = evalsets.evalset_problem(folder, task.evaluator)
        if problem is None:
            todo.append(task)
        elif problem != "missing":  # present but broken (a shard or a class list gone): not a set never fetched
            raise EvaluationError(f"task {task.key}: eval set {folder} is incomplete: {problem}")
        elif task.key not in extras:
            missing[task.key] = f"{task.folder}: {problem}"
    return todo, reused, missing


def run_task(bundle: ModelBundle, task: Task, evalsets_dir: str | Path) -> dict[str, Any]:
    """Evaluate one task and return its result line (not yet written)."""
    folder = Path(evalsets_dir) / task.folder
    for shard in evalsets.shard_paths(folder):  # a tar cut short reads as fewer samples, silently
        try:
            read_complete_tar(shard)
        except (IncompleteTar, tarfile.TarError, OSError) as exc:
            raise EvaluationError(f"task {task.key}: {shard}: {_first_line(exc)}") from None
    torch.manual_seed(0)
    try:
        result = RUNNERS[task.evaluator](bundle, task, folder)
    except FilterbenchError:
        raise
    except Exception as exc:  # corrupt tars, undecodable images...: name the task and the folder
        raise EvaluationError(f"task {task.key} failed on {folder}: {_first_line(exc)}") from exc
    return make_row(task.key, task.name, result, task.main_metric)


def write_summary(out_dir: str | Path, tasklist: TaskList) -> tuple[Path, dict[str, Any]]:
    """Summarize ``out_dir/eval_results.jsonl`` into ``out_dir/summary.json`` (atomic replace)."""
    out_dir = Path(out_dir)
    summary = summarize(out_dir / RESULTS_FILENAME, tasklist)
    path = out_dir / SUMMARY_FILENAME
    write_bytes_atomic(path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return path, summary


def evaluate_checkpoint(
    model_name: str,
    checkpoint_path: str | Path | None,
    evalsets_dir: str | Path,
    tasklist: TaskList | str | Path,
    out_dir: str | Path,
    device: str = "cpu",
    batch_size: int = 64,
    tasks: Iterable[str] | None = None,
    include_extras: bool = True,
    progress: bool = False,
    executor: Executor | None = None,
) -> EvalRun:
    """Evaluate a checkpoint on every task of a task list whose eval set is present, resuming if interrupted.

    Args:
        model_name: open_clip model name.
        checkpoint_path: checkpoint file, or None for a random init.
        evalsets_dir: folder holding ``wds_<task>_test/`` eval sets (DataComp's ``--data_dir`` layout).
        tasklist: a :class:`TaskList` or a name/path for :func:`load_tasklist`.
        out_dir: where ``eval_results.jsonl`` and ``summary.json`` go (created if needed).
        device: torch device string.
        batch_size: images per forward pass (DataComp uses 64).
        tasks: optional subset of task keys (task-list order is kept).
        include_extras: also evaluate the list's extras (e.g. Let It Wag!) when their data is present.
        progress: show a progress bar over the tasks to run, with an ETA, on stderr.
        executor: where the tasks run (default: this process); each worker loads the model once.

    Returns:
        An :class:`EvalRun`.  The model is only loaded when some task needs running.
    """
    tasklist = load_tasklist(tasklist)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILENAME
    todo, reused, missing = plan(tasklist, evalsets_dir, results_path, tasks, include_extras)
    if missing:
        log.warning(
            "%d task(s) have no usable eval set under %s and are reported missing: %s",
            len(missing),
            evalsets_dir,
            ", ".join(missing),
        )
    run = EvalRun(results_path, out_dir / SUMMARY_FILENAME, {}, reused=reused, missing_evalsets=missing)
    if todo:
        units = EvalUnits(model_name, None if checkpoint_path is None else str(checkpoint_path), str(evalsets_dir),
                          device, batch_size)
        (executor or InlineExecutor()).fold(units, todo, _InOrder(todo, results_path, run), None, "eval",
                                            progress)
    run.summary_path, run.summary = write_summary(out_dir, tasklist)
    return run


@dataclass
class EvalUnits(ExecutorTask):
    """Eval tasks as executor units: the model is loaded once per worker (an actor on Ray when on a GPU)."""

    model_name: str
    checkpoint_path: str | None
    evalsets_dir: str
    device: str = "cpu"
    batch_size: int = 64
    spawn: ClassVar[bool] = True

    @property
    def resources(self) -> Resources:
        return Resources(cpus=1.0, gpus=1.0 if self.device.startswith("cuda") else 0.0)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_bundle"}  # the model is rebuilt by setup

    def setup(self) -> None:
        from filterbench.harness.training.models import register_model_configs

        register_model_configs()  # a spawned or remote worker knows only open_clip's own architectures
        apply_clip_benchmark_patches()
        self._bundle = load_model(self.model_name, self.checkpoint_path, self.device, self.batch_size)

    def run(self, task: Task) -> tuple[dict[str, Any], float]:
        start = time.perf_counter()
        row = run_task(self._bundle, task, self.evalsets_dir)
        return row, round(time.perf_counter() - start, 3)


class _InOrder:
    """Appends result lines in task-list order as the executor returns them (out of order on a pool), so the
    results file's bytes do not depend on the executor, and every line is on disk as early as order allows."""

    def __init__(self, todo: list[Task], results_path: Path, run: EvalRun):
        self.todo, self.results_path, self.run = todo, results_path, run
        self.waiting: dict[int, tuple[dict[str, Any], float]] = {}
        self.next = 0

    def __call__(self, _: Any, index: int, result: tuple[dict[str, Any], float]) -> None:
        self.waiting[index] = result
        while self.next in self.waiting:
            row, seconds = self.waiting.pop(self.next)
            key = self.todo[self.next].key
            append_row(self.results_path, row)
            self.run.seconds[key] = seconds
            self.run.evaluated.append(key)
            log.info("evaluated %s in %.1fs", key, seconds)
            self.next += 1
