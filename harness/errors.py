"""Error types.  Every message names the file, uid, shard or plugin at fault, on one line.

The CLI prints ``error: <message>`` and exits with status 2 for these; anything else is a bug and shows its
traceback.
"""

import contextlib
from typing import Iterator


class FilterbenchError(Exception):
    """Base class: a user-facing error with a one-line message."""


class PluginError(FilterbenchError):
    """A plugin failed to load, is unknown, is registered twice, or produced invalid output."""


class ParamsError(FilterbenchError):
    """A plugin was given parameters it does not accept."""


class PoolError(FilterbenchError):
    """A pool file is missing, truncated, misaligned or malformed."""


class SubsetError(FilterbenchError):
    """A DataComp subset file is malformed (wrong dtype, unsorted, unreadable)."""


class InvariantError(FilterbenchError):
    """A sampler's output violates the invariants of its mode."""


class StoreError(FilterbenchError):
    """An artifact is missing, ambiguous, incomplete or corrupted."""


class RecipeError(FilterbenchError):
    """A recipe file is malformed or names unknown plugins or scales."""


def did_you_mean(word: str, choices: object, n: int = 3) -> str:
    """``"; did you mean 'x' or 'y'?"`` for the choices close to ``word``, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)  # type: ignore[union-attr]
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (a plugin's exception may span lines; an error here never does)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@contextlib.contextmanager
def plugin_call(kind: str, name: str, where: str) -> Iterator[None]:
    """Run plugin code; an exception it raises becomes one :class:`PluginError` line naming the plugin and
    ``where`` (e.g. ``"on shard 0003"``), chained to the original for ``--debug``.  Harness errors pass as they are.
    """
    try:
        yield
    except FilterbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - any exception from third-party code
        raise PluginError(f"{kind} {name!r} failed {where}: {first_line(exc)}") from exc


def yaml_problem(exc: BaseException) -> str:
    """A YAML parse error on one line: ``line L, column C: <problem>`` (PyYAML's own message spans lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}" + (f" ({context})" if context else "")
