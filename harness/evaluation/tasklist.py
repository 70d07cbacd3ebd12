"""Task list files: which eval sets make up a benchmark, how each is scored, and how scores are grouped.

A task list is a frozen, versioned YAML file (format in ``docs/evaluation.md``).  Its SHA-256 (of the file's
bytes) enters every evaluation key, so editing a task list can never silently reuse old results.  Built-in
lists live next to this module in ``tasklists/``; other components (the nano world) can ship their own file
and pass its path, or add their folder with :func:`register_tasklist_dir`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from filterbench.harness.errors import FilterbenchError, first_line, yaml_problem

FORMAT = "filterbench-tasklist/1"
DEFAULT_MAIN_METRIC = "acc1"  # DataComp's evaluate.py: `task.main_metric or "acc1"`
BUILTIN_DIR = Path(__file__).parent / "tasklists"
EVALUATORS = (
    "zeroshot_classification",
    "zeroshot_retrieval",
    "winogavil",
    "wilds_iwildcam",
    "wilds_camelyon17",
    "wilds_fmow",
    "dollar_street",
    "geode",
    "fairface",
)
_TASK_FIELDS = {
    "name",
    "size",
    "num_classes",
    "main_metric",
    "random_score",
    "tags",
    "time",
    "evaluator",
    "folder",
}
_TOP_FIELDS = {"format", "name", "version", "description", "tasks", "groups", "average", "extras"}

_search_dirs: list[Path] = [BUILTIN_DIR]


class TasklistError(FilterbenchError):
    """A task list file is missing or malformed."""


@dataclass(frozen=True)
class Task:
    """One evaluation task.

    Attributes:
        key: the task's id, e.g. ``vtab/cifar100`` (the ``key`` field of result lines).
        name: display name, e.g. ``CIFAR-100`` (the ``dataset`` field of result lines).
        main_metric: metric name that scores the task; None means evaluated but never scored.
        evaluator: which runner evaluates it (one of :data:`EVALUATORS`).
        folder: local folder name under an eval-set root, e.g. ``wds_vtab-cifar100_test``.
        size, num_classes, random_score, time, tags: DataComp's descriptive fields (not read by code).
    """

    key: str
    name: str
    main_metric: str | None
    evaluator: str
    folder: str
    size: int | None = None
    num_classes: int | None = None
    random_score: float | None = None
    time: float | None = None
    tags: tuple[str, ...] = ()

    @property
    def scored(self) -> bool:
        return self.main_metric is not None


@dataclass(frozen=True)
class TaskList:
    """A loaded task list.

    Attributes:
        name: the file's stem (``datacomp_v1``), used on the command line.
        title: the ``name:`` field inside the file (``datacomp``).
        version: the file's ``version:`` integer.
        sha256: hex SHA-256 of the file's bytes; part of every evaluation key.
        tasks: tasks in file order (that is the evaluation order).
        groups: headline group name -> member task keys (means over main metrics).
        average_name: display name of the all-scored-tasks average (``Average``).
        expected_scored: the number of scored tasks the file promises (checked on load).
        extras: optional tasks evaluated when present and reported beside, never inside, the average.
        path: where the file was read from.
    """

    name: str
    title: str
    version: int
    sha256: str
    tasks: tuple[Task, ...]
    groups: dict[str, tuple[str, ...]]
    average_name: str
    expected_scored: int | None
    extras: tuple[Task, ...] = ()
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def scored_tasks(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.scored)

    def task(self, key: str) -> Task:
        """The task (or extra) with this key; raises :class:`TasklistError` naming the list if unknown."""
        for task in self.tasks + self.extras:
            if task.key == key:
                return task
        raise TasklistError(f"task {key!r} is not in task list {self.name} ({self.path})")

    def keys(self) -> list[str]:
        return [t.key for t in self.tasks]


def folder_name(key: str) -> str:
    """DataComp's local folder for a task key (``download_evalsets.py``).

    ``/`` becomes ``-`` and a leading ``fairness/`` is dropped:
    ``vtab/cifar100`` -> ``wds_vtab-cifar100_test``,
    ``wilds/fmow`` -> ``wds_wilds-fmow_test``, ``fairness/geode`` -> ``wds_geode_test``.
    """
    key = key.removeprefix("fairness/")
    return f"wds_{key.replace('/', '-')}_test"


def register_tasklist_dir(path: str | Path) -> None:
    """Add a folder searched by :func:`load_tasklist` for bare names (after the built-in folder)."""
    path = Path(path)
    if path not in _search_dirs:
        _search_dirs.append(path)


def tasklist_search_dirs() -> tuple[Path, ...]:
    """The folders searched for task lists: the built-in one, then the registered ones."""
    return tuple(_search_dirs)


def available_tasklists() -> list[str]:
    """Names (file stems) of the task lists found in the search folders."""
    names = {p.stem for d in _search_dirs if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def resolve_tasklist_path(name_or_path: str | Path) -> Path:
    """A bare name is looked up in the search folders; anything else is taken as a file path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        if not candidate.is_file():
            raise TasklistError(f"task list file not found: {candidate}")
        return candidate
    for folder in _search_dirs:
        path = folder / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    raise TasklistError(
        f"unknown task list {str(name_or_path)!r}; available: {', '.join(available_tasklists())}"
    )


def load_tasklist(name_or_path: str | Path | TaskList) -> TaskList:
    """Load and validate a task list by name (``datacomp_v1``) or path; a TaskList passes through."""
    if isinstance(name_or_path, TaskList):
        return name_or_path
    path = resolve_tasklist_path(name_or_path)
    try:
        data = path.read_bytes()
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise TasklistError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    except OSError as exc:
        raise TasklistError(f"{path}: unreadable task list ({first_line(exc)})") from None
    return _build(raw, path, hashlib.sha256(data).hexdigest())


def _build(raw: Any, path: Path, sha256: str) -> TaskList:
    if not isinstance(raw, dict):
        raise TasklistError(f"{path}: expected a mapping at top level")
    if raw.get("format") != FORMAT:
        raise TasklistError(f"{path}: format must be {FORMAT!r}, got {raw.get('format')!r}")
    unknown = set(raw) - _TOP_FIELDS
    if unknown:
        raise TasklistError(f"{path}: unknown top-level fields {sorted(unknown)}")
    if not isinstance(raw.get("version"), int):
        raise TasklistError(f"{path}: `version` must be an integer")
    tasks = _parse_tasks(raw.get("tasks"), path, "tasks")
    extras = _parse_tasks(raw.get("extras") or {}, path, "extras")
    _check_unique(tasks + extras, path)
    groups = _parse_groups(raw.get("groups") or {}, tasks, path)
    average = raw.get("average") or {}
    if not isinstance(average, dict):
        raise TasklistError(f"{path}: `average` must be a mapping with `name` and optional `expected_tasks`")
    expected = average.get("expected_tasks")
    n_scored = sum(t.scored for t in tasks)
    if expected is not None and expected != n_scored:
        raise TasklistError(f"{path}: average.expected_tasks is {expected} but {n_scored} tasks are scored")
    return TaskList(
        name=path.stem,
        title=str(raw.get("name", path.stem)),
        version=raw["version"],
        sha256=sha256,
        tasks=tasks,
        groups=groups,
        average_name=str(average.get("name", "Average")),
        expected_scored=expected,
        extras=extras,
        description=str(raw.get("description", "")),
        path=path,
    )


def _parse_tasks(raw: Any, path: Path, section: str) -> tuple[Task, ...]:
    if not isinstance(raw, dict) or (section == "tasks" and not raw):
        raise TasklistError(f"{path}: `{section}` must be a non-empty mapping of task key -> fields")
    return tuple(_parse_task(key, fields or {}, path) for key, fields in raw.items())


def _parse_task(key: str, fields: dict, path: Path) -> Task:
    if not isinstance(fields, dict):
        raise TasklistError(f"{path}: task {key!r} must be a mapping")
    unknown = set(fields) - _TASK_FIELDS
    if unknown:
        raise TasklistError(f"{path}: task {key!r} has unknown fields {sorted(unknown)}")
    evaluator = fields.get("evaluator", "zeroshot_classification")
    if evaluator not in EVALUATORS:
        raise TasklistError(f"{path}: task {key!r} names unknown evaluator {evaluator!r}")
    # An absent main_metric means acc1 (DataComp); an explicit null means "evaluated, never scored".
    main_metric = fields["main_metric"] if "main_metric" in fields else DEFAULT_MAIN_METRIC
    return Task(
        key=str(key),
        name=str(fields.get("name", key)),
        main_metric=main_metric,
        evaluator=evaluator,
        folder=str(fields.get("folder") or folder_name(str(key))),
        size=fields.get("size"),
        num_classes=fields.get("num_classes"),
        random_score=fields.get("random_score"),
        time=fields.get("time"),
        tags=tuple(fields.get("tags") or ()),
    )


def _check_unique(tasks: tuple[Task, ...], path: Path) -> None:
    # Display names must be unique too: DataComp's aggregator and resume logic match rows by name.
    for attr in ("key", "name", "folder"):
        seen: set[str] = set()
        for task in tasks:
            value = getattr(task, attr)
            if value in seen:
                raise TasklistError(f"{path}: duplicate task {attr} {value!r}")
            seen.add(value)


def _parse_groups(raw: Any, tasks: tuple[Task, ...], path: Path) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise TasklistError(f"{path}: `groups` must map a group name to a list of task keys")
    by_key = {t.key: t for t in tasks}
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in raw.items():
        if not isinstance(members, list) or not members:
            raise TasklistError(f"{path}: group {name!r} must be a non-empty list of task keys")
        for key in members:
            if key not in by_key:
                raise TasklistError(f"{path}: group {name!r} names unknown task {key!r}")
            if not by_key[key].scored:
                raise TasklistError(f"{path}: group {name!r} names unscored task {key!r}")
        if len(set(members)) != len(members):
            raise TasklistError(f"{path}: group {name!r} lists a task twice")
        groups[str(name)] = tuple(members)
    return groups
