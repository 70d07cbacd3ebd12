"""``filterbench run``: recipes end to end at a scale, with several seeds."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import COUNT, one_line_errors, workdir_option
from filterbench.harness.cli.options import (FOLDER, echo_log, executor_options, executor_spec, override_option,
                                             overrides_from, parse_targets, world_options)


@click.command()
@click.argument("recipes", nargs=-1, required=True)
@click.option("--scale", "scale_name", default="nano-xs", show_default=True, help="Fixed budget (`ls scales`).")
@override_option
@click.option("--seeds", type=COUNT, default=1, show_default=True, help="Number of seeds (0, 1, ...).")
@world_options("pool", "evalsets", "tasklist", "target")
@click.option("--until", type=click.Choice(["score", "sample", "train", "eval"]), default="eval", show_default=True)
@executor_options
@click.option("--records", "records_dir", type=FOLDER, default=None,
              help="Where finished runs' records go (default: <workdir>/records; the committed board of a "
                   "checkout: leaderboard/records).")
@click.option("--compare", is_flag=True, help="Print measured minus published numbers where they exist.")
@workdir_option
@one_line_errors
def run(recipes: tuple[str, ...], scale_name: str, overrides: tuple[str, ...], seeds: int, world: str | None,
        pool_dir: Path | None, evalsets: Path | None, tasklist: str | None, targets: tuple[str, ...], until: str,
        executor_name: str, workers: int, ray_address: str | None, submit: bool, slurm_options: tuple[str, ...],
        records_dir: Path | None, compare: bool, workdir: Path | None) -> None:
    """Run recipes end to end (score -> sample -> train -> eval -> record), reusing every completed stage.

    The world is --world NAME, else the scale's default world (nano-xs and nano: the embedded nano world, built
    on first use); --pool, --evalsets, --tasklist and --target replace its parts.  Records go to --records, and
    the leaderboard beside that folder is rebuilt.

    \b
    Examples:
      filterbench run no_filter clip_score_l14_top30 --scale nano --seeds 3
      filterbench run clip_score_l14_top30 --scale small --world dc-small --until sample
    """
    from filterbench.harness.config import resolve_run_config
    from filterbench.harness.recipes import load_recipe
    from filterbench.harness.runner import RunContext, run_all

    loaded = [load_recipe(r) for r in recipes]  # a misspelt recipe fails before a world is built
    config = resolve_run_config(workdir=workdir, scale=scale_name, overrides=overrides_from(overrides),
                                world=world, pool=pool_dir, evalsets=evalsets, tasklist=tasklist,
                                inputs=parse_targets(targets), seeds=seeds, records=records_dir, until=until,
                                executor=executor_spec(executor_name, workers, ray_address, submit, slurm_options),
                                log=echo_log)
    ctx = RunContext.create(config, on_stage=_echo_stage, progress=True)
    results = run_all(ctx, loaded)
    _print_table(results)
    if compare:
        _print_comparison(results, config.scale.name)
    _finish(results, ctx)


def _echo_stage(stage, result, artifact, reused) -> None:
    what = "reused" if reused else "done"
    click.echo(f"[{result.recipe.name} seed={result.seed}] {stage:<6} {what:<6} {artifact.path}", err=True)


def _print_table(results) -> None:
    from filterbench.harness.runner import summary_rows

    rows = summary_rows(results)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    click.echo("  ".join(f"{c:>12}" if c not in ("recipe",) else f"{c:<32}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "recipe":
                cells.append(f"{value:<32}")
            elif isinstance(value, float):
                cells.append(f"{value:>12.4f}")
            else:
                cells.append(f"{'-' if value is None else value:>12}")
        click.echo("  ".join(cells))


def _print_comparison(results, scale: str) -> None:
    from filterbench.harness.published import published_numbers
    from filterbench.harness.runner import headline_scores

    published = published_numbers()
    for r in results:
        ref = published.get((r.recipe.name, scale))
        groups = headline_scores(r)
        if not ref or not groups:
            continue
        diffs = [f"{name} {groups[name] - value:+.4f}" for name, value in ref.items() if groups.get(name) is not None]
        click.echo(f"{r.recipe.name} seed={r.seed} measured - published: {', '.join(diffs)}")


def _finish(results, ctx) -> None:
    """The last lines: the selection (runs that stop early), else what observers made of the new records."""
    last = results[-1] if results else None
    if ctx.config.until != "eval" or last is None:
        click.echo(str(last.selection.path if last and last.selection else ctx.store.root))
        return
    from filterbench.harness.evaluation.tasklist import register_tasklist_dir, resolve_tasklist_path

    if ctx.config.tasklist is not None:  # the board recomputes each record's groups from the task list it names
        register_tasklist_dir(resolve_tasklist_path(ctx.config.tasklist).resolve().parent)
    records = [r.record for r in results if r.record is not None]
    produced = ctx.plugins.pm.hook.records_written(records_dir=ctx.config.records_dir, records=records)
    click.echo(f"records: {ctx.config.records_dir}")
    for outputs in produced:
        for label, path in (outputs or {}).items():
            click.echo(f"{label}: {path}")
