"""Shared CLI plumbing: the store from --workdir, ``-p key=value`` params, one-line errors."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
import yaml

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.store import Store, default_workdir


def parse_params(pairs: tuple[str, ...], what: str = "param") -> dict[str, Any]:
    """``("fraction=0.3", "model=l14")`` -> ``{"fraction": 0.3, "model": "l14"}``; values parse as YAML scalars."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{what} {pair!r} is not of the form key=value")
        params[key.strip()] = yaml.safe_load(value) if value != "" else ""
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


def one_line_errors(func: Callable) -> Callable:
    """Turn harness errors into ``error: <message>`` and exit 2 (tracebacks only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FilterbenchError as exc:
            if _debug():
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))
