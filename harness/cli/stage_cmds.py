"""``filterbench score|sample|show|validate|pool``: one stage at a time."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import (COUNT, SEED, get_store, one_line_errors, params_option, parse_params,
                                            print_json, workdir_option)


@click.command()
@click.argument("scorer_name", metavar="SCORER")
@click.option("--pool", "pool_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Pool folder in DataComp layout (metadata/, shards/).")
@params_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Score seed (fixes batch plans).")
@click.option("--workers", type=COUNT, default=1, show_default=True, help="Local worker processes.")
@workdir_option
@one_line_errors
def score(scorer_name: str, pool_dir: Path, params: tuple[str, ...], seed: int, workers: int,
          workdir: Path | None) -> None:
    """Score every uid of a pool; prints the score artifact folder last.

    \b
    Examples:
      filterbench score clip_score --pool ./pool -p model=l14
      filterbench score clip_score --pool ./pool -p model=b32 --workers 2
    """
    from filterbench import get_scorer
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score

    scorer = get_scorer(scorer_name, **parse_params(params))
    artifact = run_score(get_store(workdir), Pool(pool_dir), scorer, seed=seed, workers=workers)
    stats = artifact.manifest["stats"]
    for column, s in stats.items():
        click.echo(f"{scorer_name}.{column}: n={s['count']} mean={s.get('mean', float('nan')):.4f} "
                   f"min={s.get('min', float('nan')):.4f} max={s.get('max', float('nan')):.4f}")
    click.echo(str(artifact.path))


@click.command()
@click.argument("sampler_name", metavar="SAMPLER")
@click.option("--scores", "score_refs", multiple=True, required=False,
              help="Score artifact (key, key prefix or folder); repeatable.")
@params_option
@click.option("--scale", default=None, help="Take the budget from this scale (default: pool-sized budget).")
@click.option("--samples-seen", type=COUNT, default=None, help="Override the budget (marks runs unofficial).")
@click.option("--pool", "pool_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Pool folder, for samplers that read no scores (e.g. random_fraction, all).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@workdir_option
@one_line_errors
def sample(sampler_name: str, score_refs: tuple[str, ...], params: tuple[str, ...], scale: str | None,
           samples_seen: int | None, pool_dir: Path | None, seed: int, workdir: Path | None) -> None:
    """Turn scores into counts and a DataComp subset file; prints the selection folder last.

    \b
    Examples:
      filterbench sample top_fraction --scores 3fa2c1 -p fraction=0.3
      filterbench sample all --pool ./pool
    """
    from filterbench import get_sampler
    from filterbench.harness.contract import Budget
    from filterbench.harness.stages.sample import run_sample

    store = get_store(workdir)
    sampler = get_sampler(sampler_name, **parse_params(params))
    artifacts = [store.find(ref, kind="scores") for ref in score_refs]
    if not artifacts:
        artifacts = [_no_score_input(store, pool_dir)]
    budget = None
    if scale or samples_seen:
        from filterbench.harness.scales import get_scale

        base = get_scale(scale) if scale else None
        seen = samples_seen or base.samples_seen
        budget = Budget(samples_seen=seen, segments=base.segments if base else 5, pool_size=0)
    artifact = run_sample(store, sampler, artifacts, budget=budget, seed=seed)
    stats = artifact.manifest["stats"]
    click.echo(f"kept {stats['unique_uids']:,} unique uids of {stats['pool_size']:,}; total {stats['total']:,}; "
               f"max count {stats['max_count']}")
    click.echo(str(artifact.path))


def _no_score_input(store, pool_dir: Path | None):
    """Samplers that read no score still need the pool's uids: score it with the trivial `constant` input."""
    if pool_dir is None:
        raise click.UsageError("give --scores (or --pool for samplers that read no scores)")
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.uidscorer import UidOnlyScorer

    return run_score(store, Pool(pool_dir), UidOnlyScorer(), progress=False)


@click.command()
@click.argument("ref")
@click.option("--verify", is_flag=True, help="Check output digests against the manifest.")
@workdir_option
@one_line_errors
def show(ref: str, verify: bool, workdir: Path | None) -> None:
    """Print an artifact's manifest (ID card), found by key, key prefix or folder.

    \b
    Examples:
      filterbench show 3fa2c1
      filterbench show filterbench-work/selections/top_fraction-3fa2c1d0e9b84a77 --verify
    """
    artifact = get_store(workdir).find(ref)
    if verify:
        artifact.verify()
    print_json(artifact.manifest)


@click.command()
@click.argument("recipe_ref", metavar="RECIPE")
@one_line_errors
def validate(recipe_ref: str) -> None:
    """Resolve a recipe's plugins and params without computing anything.

    \b
    Examples:
      filterbench validate clip_score_l14_top30
      filterbench validate ./my_recipe.yaml
    """
    from filterbench.harness.recipes import check_recipe, load_recipe

    recipe = load_recipe(recipe_ref)
    resolved = check_recipe(recipe)
    resolved["recipe_key"] = recipe.key()
    print_json(resolved)


@click.group()
def pool() -> None:
    """Inspect and validate pools."""


@pool.command("check")
@click.argument("pool_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--deep", is_flag=True, help="Also read every npz array and tar shard.")
@one_line_errors
def pool_check(pool_dir: Path, deep: bool) -> None:
    """Validate a DataComp-format pool folder (uids, sidecars, tars).

    \b
    Examples:
      filterbench pool check ./pool
      filterbench pool check ./pool --deep
    """
    from filterbench.harness.pool import Pool
    from filterbench.harness.poolcheck import check_pool

    the_pool = Pool(pool_dir)
    report = check_pool(the_pool, deep=deep)
    report["key"] = the_pool.key()
    print_json(report)


@pool.command("fabricate")
@click.argument("pool_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rows", type=COUNT, default=2000, show_default=True)
@click.option("--shards", type=COUNT, default=2, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@one_line_errors
def pool_fabricate(pool_dir: Path, rows: int, shards: int, seed: int) -> None:
    """Write a small random pool in DataComp's exact layout (for trying the tools; it carries no signal).

    \b
    Examples:
      filterbench pool fabricate ./demo-pool
      filterbench pool fabricate ./demo-pool --rows 10000 --shards 4
    """
    from filterbench.testing import fabricate_pool

    if (pool_dir / "metadata").exists():  # idempotent, so the README's main job can be rerun as it is
        click.echo(f"{pool_dir}: already holds a pool; leaving it as it is", err=True)
        click.echo(str(pool_dir))
        return
    click.echo(str(fabricate_pool(pool_dir, rows=rows, shards=shards, seed=seed)))
