"""``filterbench run``: recipes end to end at a scale, with several seeds."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import COUNT, get_store, one_line_errors, parse_params, workdir_option

NANO_SIZES = {"nano-xs": "xs", "nano": "default"}


@click.command()
@click.argument("recipes", nargs=-1, required=True)
@click.option("--scale", "scale_name", default="nano-xs", show_default=True, help="Fixed budget (`ls scales`).")
@click.option("--seeds", type=COUNT, default=1, show_default=True, help="Number of seeds (0, 1, ...).")
@click.option("--pool", "pool_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Pool folder (default on nano scales: the nano world, built on first use).")
@click.option("--until", type=click.Choice(["score", "sample", "train", "eval"]), default="eval", show_default=True)
@click.option("--evalsets", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local eval sets in DataComp's layout (default on nano scales: the nano suite).")
@click.option("--tasklist", default=None, help="Task list name or file (default: the nano list, or datacomp_v1).")
@click.option("--workers", type=COUNT, default=1, show_default=True, help="Score workers.")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KNOB=VALUE",
              help="Override a scale knob (marks the run unofficial).")
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where finished runs' records go (default: leaderboard/records of this checkout).")
@click.option("--compare", is_flag=True, help="Print measured minus published numbers where they exist.")
@workdir_option
@one_line_errors
def run(recipes: tuple[str, ...], scale_name: str, seeds: int, pool_dir: Path | None, until: str,
        evalsets: Path | None, tasklist: str | None, workers: int, overrides: tuple[str, ...], records_dir: Path | None, compare: bool,
        workdir: Path | None) -> None:
    """Run recipes end to end (score -> sample -> train -> eval), reusing every completed stage.

    \b
    Examples:
      filterbench run no_filter clip_score_l14_top30 --scale nano --seeds 3
      filterbench run clip_score_l14_top30 --scale small --pool /data/datacomp_small --until sample
    """
    from filterbench.harness.recipes import load_recipe
    from filterbench.harness.runner import RunContext, run_all
    from filterbench.harness.scales import get_scale

    scale, official = get_scale(scale_name).with_overrides(**parse_params(overrides, "override"))
    loaded = [load_recipe(r) for r in recipes]
    pool, world = _pool_for(scale, pool_dir)
    ctx = RunContext(store=get_store(workdir), pool=pool, scale=scale, official=official,
                     overrides=parse_params(overrides, "override"), workers=workers, until=until,
                     evalsets=evalsets or (world.evalsets_dir if world else None),
                     tasklist=tasklist or (world.tasklist if world else None),
                     oracle_dir=world.oracle_dir if world else None,
                     records_dir=records_dir or _default_records_dir(), on_stage=_echo_stage)
    results = run_all(ctx, loaded, list(range(seeds)))
    _print_table(results)
    if compare:
        _print_comparison(results, scale.name)
    _finish(results, ctx)


def _pool_for(scale, pool_dir: Path | None):
    from filterbench.harness.pool import Pool

    if pool_dir is not None:
        return Pool(pool_dir), None
    if scale.name not in NANO_SIZES:
        raise click.UsageError(f"scale {scale.name!r} needs --pool DIR (a DataComp pool on disk)")
    from filterbench.harness.nano import get_world

    world = get_world(NANO_SIZES[scale.name])
    return Pool(world.pool_dir), world


def _default_records_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "leaderboard" / "records"


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
    last = results[-1] if results else None
    if ctx.until != "eval" or last is None:
        click.echo(str(last.selection.path if last and last.selection else ctx.store.root))
        return
    from filterbench.harness.evaluation.tasklist import register_tasklist_dir, resolve_tasklist_path
    from filterbench.leaderboard.build import build_leaderboard

    if ctx.tasklist is not None:  # the board recomputes each record's groups from the task list it names
        register_tasklist_dir(resolve_tasklist_path(ctx.tasklist).resolve().parent)
    out = ctx.records_dir.parent
    written = build_leaderboard(ctx.records_dir, out)
    click.echo(f"leaderboard: {written[-1] if written else out}")
