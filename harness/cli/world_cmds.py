"""``filterbench world ls|show|check|add|remove``: the worlds that providers register, and local downloads."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import one_line_errors, print_json, workdir_option
from filterbench.harness.cli.options import FOLDER, echo_log, parse_targets


@click.group("world")
def world() -> None:
    """Worlds: a pool with its eval sets, task list and named inputs (docs/worlds.md).

    \b
    Examples:
      filterbench world ls
      filterbench world add dc-small --pool /data/datacomp/small --evalsets /data/datacomp/evalsets
      filterbench world check dc-small
    """


def _sources(workdir: Path | None):
    from filterbench.harness.manager import get_plugins
    from filterbench.harness.store import default_workdir
    from filterbench.harness.worlds import world_sources

    return world_sources(get_plugins(), workdir or default_workdir())


@world.command("ls")
@workdir_option
@one_line_errors
def world_ls(workdir: Path | None) -> None:
    """List the known worlds: name, provider, default scales, whether ready, description."""
    for name, source in sorted(_sources(workdir).items()):
        status = "ready" if source.ready() is not None else "built on first use"
        scales = ",".join(source.scales) or "-"
        click.echo(f"{name:<16} {source.provider:<16} {scales:<10} {status:<19} {source.description}")


@world.command("show")
@click.argument("name")
@workdir_option
@one_line_errors
def world_show(name: str, workdir: Path | None) -> None:
    """Print a world's parts as JSON (a world that is not built yet is described without building it)."""
    from filterbench.harness.worlds import find_world

    source = find_world(name, _sources(workdir))
    found = source.ready()
    if found is None:
        print_json({"name": name, "provider": source.provider, "scales": list(source.scales),
                    "description": source.description, "built": False})
        return
    print_json({**found.describe(), "provider": source.provider, "scales": list(source.scales),
                "description": source.description})


@world.command("check")
@click.argument("name")
@click.option("--build", is_flag=True, help="Build the world first when it is not built yet.")
@workdir_option
@one_line_errors
def world_check(name: str, build: bool, workdir: Path | None) -> None:
    """Check that every part of a world is present; each missing part is one line, and the exit status is 2.

    \b
    Examples:
      filterbench world check dc-small
      filterbench world check nano-xs --build
    """
    from filterbench.harness.worldcheck import world_problems
    from filterbench.harness.worlds import WorldError, find_world

    source = find_world(name, _sources(workdir))
    found = source.open(echo_log) if build else source.ready()
    if found is None:
        raise WorldError(f"world {name}: not built yet (it is built on first use; `filterbench world check "
                         f"{name} --build` builds it now)")
    problems = world_problems(found)
    if problems:
        for problem in problems[:-1]:
            click.echo(f"error: {problem}", err=True)
        raise WorldError(problems[-1])
    click.echo(f"world {name}: every part is present")


@world.command("add")
@click.argument("name")
@click.option("--pool", "pool_dir", type=FOLDER, required=True, help="The pool folder (metadata/, shards/).")
@click.option("--evalsets", type=FOLDER, required=True,
              help="Eval sets as DataComp's download_evalsets.py writes them.")
@click.option("--tasklist", default="datacomp_v1", show_default=True, help="Task list name or file.")
@click.option("--target", "targets", multiple=True, metavar="[ROLE=]PATH",
              help="Named input (repeatable); a bare PATH is the ImageNet-train target features "
                   "(e.g. DataComp's in1k_clip_vit_l14_*.pt folder).")
@click.option("--force", is_flag=True, help="Replace a registered download of the same name.")
@workdir_option
@one_line_errors
def world_add(name: str, pool_dir: Path, evalsets: Path, tasklist: str, targets: tuple[str, ...], force: bool,
              workdir: Path | None) -> None:
    """Register a local DataComp download as world NAME (kept in the store); checks every part first.

    \b
    Examples:
      filterbench world add dc-small --pool /data/datacomp/small --evalsets /data/datacomp/evalsets
      filterbench world add dc-small --pool /data/small --evalsets /data/evalsets --target /data/in1k_l14
    """
    from filterbench.harness.localworlds import describe_download, save_world
    from filterbench.harness.store import default_workdir
    from filterbench.harness.worldcheck import world_problems
    from filterbench.harness.worlds import WorldError

    root = workdir or default_workdir()
    taken = _sources(root).get(name)
    if taken is not None and not (force and taken.provider == "datacomp_world"):
        hint = " (--force replaces it)" if taken.provider == "datacomp_world" else ""
        raise WorldError(f"world {name!r} already exists (provider {taken.provider}){hint}")
    described = describe_download(name, pool_dir, evalsets, tasklist, parse_targets(targets))
    problems = world_problems(described)
    if problems:
        raise WorldError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    click.echo(f"world {name}: registered in {save_world(root, described)}")


@world.command("remove")
@click.argument("name")
@workdir_option
@one_line_errors
def world_remove(name: str, workdir: Path | None) -> None:
    """Forget a registered download (its files are left alone)."""
    from filterbench.harness.localworlds import remove_world
    from filterbench.harness.store import default_workdir

    click.echo(f"world {name}: removed {remove_world(workdir or default_workdir(), name)}")
