"""``filterbench plugins`` and ``filterbench ls``."""

from __future__ import annotations

import click

from filterbench.harness.cli.common import one_line_errors, print_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def plugins(as_json: bool) -> None:
    """List installed plugins, what they register, and any that failed to load.

    \b
    Examples:
      filterbench plugins
      FILTERBENCH_LOAD_PLUGINS=clip_score filterbench plugins --json
    """
    from filterbench.harness.manager import get_plugins

    found = get_plugins()
    found.scorers, found.samplers, found.executors  # noqa: B018  (building the registries fills in what each plugin registered)
    configs = found.model_config_owners()
    rows = [{"name": i.name, "module": i.module, "distribution": i.distribution, "version": i.version,
             "scorers": i.scorers, "samplers": i.samplers, "executors": i.executors,
             "model_configs": configs.get(i.name, []),
             "error": i.error} for i in found.infos.values()]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        what = ", ".join([f"scorer {s}" for s in row["scorers"]] + [f"sampler {s}" for s in row["samplers"]]
                         + [f"executor {e}" for e in row["executors"]]
                         + [f"model configs {c}" for c in row["model_configs"]])
        status = f"FAILED: {row['error']}" if row["error"] else (what or "no scorers or samplers")
        click.echo(f"{row['name']:<22} {row['distribution'] or '-'} {row['version'] or ''}  {status}")


@click.command()
@click.argument("what", type=click.Choice(["scorers", "samplers", "scales", "recipes", "tasks"]))
@click.option("--params", "show_params", is_flag=True, help="Show each plugin's parameters and defaults.")
@one_line_errors
def ls(what: str, show_params: bool) -> None:
    """List scorers, samplers, scales, recipes or eval tasks.

    \b
    Examples:
      filterbench ls samplers --params
      filterbench ls scales
    """
    if what in ("scorers", "samplers"):
        _list_plugins(what, show_params)
    elif what == "scales":
        _list_scales()
    elif what == "recipes":
        from filterbench.harness.recipes import list_recipes

        for recipe in list_recipes():
            click.echo(f"{recipe.name:<36} v{recipe.version}  {recipe.description}")
    else:
        _list_tasks()


def _list_plugins(what: str, show_params: bool) -> None:
    from filterbench.harness.manager import get_plugins

    registry = getattr(get_plugins(), what)
    for name, cls in registry:
        mode = f" [{cls.mode}]" if what == "samplers" else ""
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        click.echo(f"{name:<24} v{cls.version}{mode}  {doc}")
        if show_params:
            for field, info in cls.Params.model_fields.items():
                default = "required" if info.is_required() else f"default {info.default!r}"
                click.echo(f"    {field}: {getattr(info.annotation, '__name__', info.annotation)} ({default})")


def _list_scales() -> None:
    from filterbench.harness.scales import SCALES

    click.echo(f"{'scale':<10} {'model':<22} {'batch':>7} {'lr':>8} {'warmup':>7} {'samples seen':>15} "
               f"{'pool':>15} segments")
    for s in SCALES.values():
        pool = f"{s.pool_size:,}" if s.pool_size else "-"
        click.echo(f"{s.name:<10} {s.model:<22} {s.batch_size:>7} {s.lr:>8g} {s.warmup:>7} {s.samples_seen:>15,} "
                   f"{pool:>15} {s.segments}")


def _list_tasks() -> None:
    try:
        from filterbench.harness.evaluation.tasklist import load_tasklist
    except ImportError:
        raise click.ClickException("the evaluation module is not installed") from None
    tasklist = load_tasklist("datacomp_v1")
    for task in tasklist.tasks:
        click.echo(f"{task.key:<52} {task.main_metric or '-'}")
