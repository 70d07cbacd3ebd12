"""Shared CLI plumbing: the store from --workdir, ``-p key=value`` params, one-line errors and interruptions.

Every command ends in one of three ways: its output (exit 0); ``error: <one line>`` (exit 2) for a harness error,
with the traceback only under ``--debug``; or, on Ctrl-C, SIGTERM or a closed terminal (SIGHUP),
``interrupted: <what was kept for the resume>`` (exit 130, 143 or 129), forked workers stopped with it.
"""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import click
import yaml

from filterbench.harness.errors import FilterbenchError, yaml_problem
from filterbench.harness.executor import Deferred
from filterbench.harness.store import Store, default_workdir, interrupted_builds

#: counts (workers, seeds, rows, samples): 0 or less is never meaningful
COUNT = click.IntRange(min=1)
#: seeds feed numpy's SeedSequence, which takes non-negative integers
SEED = click.IntRange(min=0)


def parse_params(pairs: tuple[str, ...], what: str = "param") -> dict[str, Any]:
    """``("fraction=0.3", "model=l14")`` -> ``{"fraction": 0.3, "model": "l14"}``; values parse as YAML scalars."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{what} {pair!r} is not of the form key=value")
        try:
            params[key.strip()] = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{what} {pair!r}: the value is not a YAML scalar ({yaml_problem(exc)})") \
                from None
    return params


def workdir_option(func: Callable) -> Callable:
    return click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        envvar="FILTERBENCH_HOME", show_envvar=True,
                        help="Artifact store (default ./filterbench-work).")(func)


def get_store(workdir: Path | None) -> Store:
    from filterbench.harness.manager import get_plugins

    return Store(workdir or default_workdir(), hooks=get_plugins())


def params_option(func: Callable) -> Callable:
    return click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
                        help="Plugin parameter (repeatable); values are YAML scalars.")(func)


def print_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that every stage unwinds as it does on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP (a closed terminal) into :class:`Terminated` in this process."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)


def one_line_errors(func: Callable) -> Callable:
    """Turn harness errors into ``error: <message>`` and exit 2 (tracebacks only with --debug), and an
    interruption into ``interrupted: <what was kept>`` and exit 128 + the signal number."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = len(interrupted_builds())  # report the builds this command stopped, not earlier ones (tests)
        try:
            return func(*args, **kwargs)
        except Deferred as exc:  # handed to Slurm: not an error, the rerun completes the stage
            click.echo(str(exc), err=True)
            sys.exit(0)
        except FilterbenchError as exc:
            if _debug():
                raise
            click.echo(f"error: {one_line(str(exc))}", err=True)
            sys.exit(2)
        except OSError as exc:
            if _debug() or not _no_space(exc):
                raise
            kept = interrupted_builds()[before:]
            what = "; ".join(kept) if kept else "nothing was being built"
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"error: {where}no space left on device ({what}); free space and rerun the same command "
                       "to resume", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            if _debug():
                raise
            signum = getattr(exc, "signum", signal.SIGINT)
            kept = interrupted_builds()[before:]
            what = "; ".join(kept) if kept else "no stage was building"
            click.echo(f"interrupted ({signal.Signals(signum).name}): {what}; rerun the same command to resume",
                       err=True)
            sys.exit(128 + signum)

    return wrapper


def _no_space(exc: OSError) -> bool:
    """ENOSPC or EDQUOT, also from libraries (pyarrow) that give no errno, only the C library's message."""
    import errno

    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)


def one_line(message: str) -> str:
    """A message on one line (a harness error is one line by contract; this is the safety net)."""
    return " | ".join(line.strip() for line in message.strip().splitlines() if line.strip())


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))
