"""What the board reads beside the records: each recipe file's version and resource class, each task's chance.

Records name their recipe and task list; the files behind those names say what the records cannot: which
outside resources a recipe declares (``resources:``, added after many records were made, and not part of
the recipe's key) and whether a recipe file has moved on to a newer version than its records.  Task lists
give each task's chance level (``random_score``) and size.  Both are read from the repository, so the board's
bytes depend on them too; a name with no file simply has no declaration.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from filterbench.harness.errors import FilterbenchError

#: the tasklist folders searched for a record's task list (matched by SHA-256, so a renamed file still counts)
TASKLIST_DIRS = (Path(__file__).resolve().parent.parent / "harness" / "evaluation" / "tasklists",
                 Path(__file__).resolve().parent.parent / "harness" / "nano" / "tasklists")
UNDECLARED = "undeclared"


@dataclass(frozen=True)
class RecipeDeclaration:
    """The recipe file's current version and its declared resources (class None: the file declares none)."""

    version: int
    resources: str | None
    uses: tuple[str, ...]


@lru_cache(maxsize=None)
def recipe_declaration(name: str, recipes_dir: Path) -> RecipeDeclaration | None:
    """``recipes_dir/<name>.yaml``'s declaration; None when no such file (records may name any recipe)."""
    from filterbench.harness.recipes import load_recipe

    # only plain names map to a file: a record's name must never reach outside the folder
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        return None
    path = recipes_dir / f"{name}.yaml"
    if not path.is_file():
        return None
    try:
        recipe = load_recipe(path)
    except FilterbenchError:
        return None  # a broken recipe file is `filterbench validate`'s business, not the board's
    return RecipeDeclaration(recipe.version, recipe.resources, recipe.resources_uses)


@dataclass(frozen=True)
class TaskInfo:
    """One task of a task list: display name, chance level (None: not given) and number of test items."""

    name: str
    chance: float | None
    size: int | None


def tasklist_dirs() -> tuple[Path, ...]:
    """The folders searched for a record's task list: the repository's, then any a command registered with
    :func:`~filterbench.harness.evaluation.tasklist.register_tasklist_dir` (``run --tasklist FILE`` registers the
    file's folder, ``leaderboard build --tasklists DIR`` a folder of its own)."""
    from filterbench.harness.evaluation.tasklist import tasklist_search_dirs

    return tuple(dict.fromkeys((*TASKLIST_DIRS, *tasklist_search_dirs())))


@lru_cache(maxsize=None)
def _tasklists_by_sha(folders: tuple[Path, ...]) -> dict[str, Path]:
    found = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
            found.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return found


def known_tasklist(sha256: str):
    """The :class:`~filterbench.harness.evaluation.tasklist.TaskList` whose file has this SHA-256, or None."""
    return _known_tasklist(sha256, tasklist_dirs())


@lru_cache(maxsize=None)
def _known_tasklist(sha256: str, folders: tuple[Path, ...]):
    from filterbench.harness.evaluation.tasklist import load_tasklist

    path = _tasklists_by_sha(folders).get(sha256)
    return None if path is None else load_tasklist(path)


def tasklist_tasks(sha256: str) -> dict[str, TaskInfo] | None:
    """Key -> :class:`TaskInfo` of the task list file with this SHA-256, or None when none is found."""
    return _tasklist_tasks(sha256, tasklist_dirs())


@lru_cache(maxsize=None)
def _tasklist_tasks(sha256: str, folders: tuple[Path, ...]) -> dict[str, TaskInfo] | None:
    tasklist = _known_tasklist(sha256, folders)
    if tasklist is None:
        return None
    return {t.key: TaskInfo(t.name, t.random_score, t.size) for t in tasklist.scored_tasks}
