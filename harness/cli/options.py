"""Options shared by ``run`` and the stage commands, so that each is spelled one way everywhere.

``-o KNOB=VALUE`` overrides a scale setting on every command (``-p KEY=VALUE`` stays a plugin parameter);
``--world``, ``--pool``, ``--evalsets``, ``--tasklist`` and ``--target`` name a world and its parts.  Older
spellings (``train --set``, ``sample --samples-seen``) still work, hidden, and print a deprecation warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from filterbench.harness.cli.common import parse_params

FOLDER = click.Path(file_okay=False, path_type=Path)


def override_option(func: Callable) -> Callable:
    return click.option("-o", "--override", "overrides", multiple=True, metavar="KNOB=VALUE",
                        help="Override a scale setting (repeatable); changing a fixed knob marks the run "
                             "unofficial.")(func)


_PART_OPTIONS = {
    "pool": lambda: click.option("--pool", "pool_dir", type=FOLDER, default=None,
                                 help="Pool folder in DataComp's layout (replaces the world's pool)."),
    "evalsets": lambda: click.option("--evalsets", type=FOLDER, default=None,
                                     help="Eval sets in DataComp's layout (replaces the world's)."),
    "tasklist": lambda: click.option("--tasklist", default=None,
                                     help="Task list name or file (default: the world's, or datacomp_v1)."),
    "target": lambda: click.option("--target", "targets", multiple=True, metavar="[ROLE=]PATH",
                                   help="A named input of the pool (repeatable); a bare PATH is the "
                                        "ImageNet-train target features (role imagenet_train)."),
}


def world_options(*parts: str) -> Callable[[Callable], Callable]:
    """``--world NAME`` plus the options of ``parts`` (``pool``, ``evalsets``, ``tasklist``, ``target``), which
    replace the world's own parts."""

    def decorate(func: Callable) -> Callable:
        for part in reversed(parts):
            func = _PART_OPTIONS[part]()(func)
        return click.option("--world", "world", default=None, metavar="NAME",
                            help="World to use (`filterbench world ls`; default: the scale's default "
                                 "world).")(func)

    return decorate


def parse_targets(values: tuple[str, ...]) -> dict[str, Path]:
    """``("imagenet_train=/x", "/y")`` -> role -> path; a bare path fills the ImageNet-train role."""
    from filterbench.harness.localworlds import DEFAULT_TARGET_ROLE

    out: dict[str, Path] = {}
    for value in values:
        role, sep, path = value.partition("=")
        if not sep:
            role, path = DEFAULT_TARGET_ROLE, value
        if not role or not path:
            raise click.BadParameter(f"{value!r}: give PATH or ROLE=PATH", param_hint="--target")
        out[role] = Path(path)
    return out


def deprecated_option(old: str, dest: str, replacement: str, **kwargs: Any) -> Callable:
    """A hidden option kept for old command lines; using it prints one warning naming its replacement."""

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, (), False):
            click.echo(f"warning: {old} is deprecated; use {replacement}", err=True)
        return value

    return click.option(old, dest, hidden=True, callback=warn, expose_value=True, **kwargs)


def overrides_from(values: tuple[str, ...], *aliases: tuple[str, ...]) -> dict[str, Any]:
    """The ``-o`` pairs plus those of deprecated aliases, parsed (values are YAML scalars)."""
    return parse_params(tuple(values) + tuple(v for alias in aliases for v in alias), "override")


def echo_log(line: str) -> None:
    """Progress lines (the world build's phases) go to stderr, leaving stdout to results."""
    click.echo(line, err=True)


def executor_options(func: Callable) -> Callable:
    """``--executor``, ``--workers``, ``--ray-address``, ``--submit``, ``--slurm-option``: where units run
    (docs/scale.md)."""
    from filterbench.harness.cli.common import COUNT
    from filterbench.harness.executor import EXECUTORS

    options = [
        click.option("--executor", "executor_name", default="local", show_default=True, metavar="NAME",
                     help=f"Where the stage's units run: {', '.join(EXECUTORS)} (this process, local worker "
                          "processes, a Ray cluster, a Slurm job array), or one a plugin registers."),
        click.option("--workers", type=COUNT, default=None,
                     help="Local worker processes (local, default 1); CPUs of the Ray cluster started here (ray, "
                          "default all)."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="An existing Ray cluster (auto, HOST:6379, ray://HOST:10001); default: start one here."),
        click.option("--submit", is_flag=True, help="slurm: submit the array script with sbatch (default: only "
                                                     "write it)."),
        click.option("--slurm-option", "slurm_options", multiple=True, metavar="OPTION",
                     help="slurm: an extra #SBATCH line, e.g. --slurm-option=--partition=cpu (repeatable)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def executor_spec(executor_name: str, workers: int | None, ray_address: str | None, submit: bool,
                  slurm_options: tuple[str, ...]):
    """The :class:`~filterbench.harness.executor.ExecutorSpec` of :func:`executor_options`' values."""
    from filterbench.harness.executor import ExecutorSpec

    if (ray_address and executor_name != "ray") or ((submit or slurm_options) and executor_name != "slurm"):
        raise click.UsageError("--ray-address goes with --executor ray; --submit and --slurm-option with "
                               "--executor slurm")
    workers = workers if workers is not None else (0 if executor_name == "ray" else 1)
    return ExecutorSpec(executor_name, workers, ray_address, submit, slurm_options=tuple(slurm_options))
