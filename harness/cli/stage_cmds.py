"""``filterbench score|sample|show|validate|pool``: one stage at a time."""

from __future__ import annotations

from pathlib import Path

import click

from filterbench.harness.cli.common import (COUNT, SEED, get_store, one_line_errors, params_option, parse_params, print_json,
                                            workdir_option)
from filterbench.harness.cli.options import (deprecated_option, echo_log, executor_options, executor_spec,
                                             override_option, overrides_from, parse_targets, world_options)


@click.command()
@click.argument("scorer_name", metavar="SCORER")
@world_options("pool", "target")
@params_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Score seed (fixes batch plans).")
@executor_options
@workdir_option
@one_line_errors
def score(scorer_name: str, world: str | None, pool_dir: Path | None, targets: tuple[str, ...],
          params: tuple[str, ...], seed: int, executor_name: str, workers: int, ray_address: str | None,
          submit: bool, slurm_options: tuple[str, ...], workdir: Path | None) -> None:
    """Score every uid of a world's pool; prints the score artifact folder last.

    \b
    Examples:
      filterbench score clip_score --pool ./pool -p model=l14
      filterbench score normsim --world dc-small --workers 2
      filterbench score dfn --world dc-small --executor ray --ray-address auto
      filterbench score clip_score --world dc-small --executor slurm --submit
    """
    from filterbench import get_scorer
    from filterbench.harness.config import resolve_run_config
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score

    scorer = get_scorer(scorer_name, **parse_params(params))
    config = resolve_run_config(workdir=workdir, world=world, pool=pool_dir, inputs=parse_targets(targets),
                                executor=executor_spec(executor_name, workers, ray_address, submit, slurm_options),
                                stages=("score",), log=echo_log)
    artifact = run_score(get_store(config.workdir), Pool(config.pool), scorer, seed=seed, executor=config.executor)
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
@override_option
@deprecated_option("--samples-seen", "samples_seen", "-o samples_seen=N (with --scale)", type=COUNT, default=None)
@world_options("pool")
@click.option("--seed", type=SEED, default=0, show_default=True)
@executor_options
@workdir_option
@one_line_errors
def sample(sampler_name: str, score_refs: tuple[str, ...], params: tuple[str, ...], scale: str | None,
           overrides: tuple[str, ...], samples_seen: int | None, world: str | None, pool_dir: Path | None,
           seed: int, executor_name: str, workers: int, ray_address: str | None, submit: bool,
           slurm_options: tuple[str, ...], workdir: Path | None) -> None:
    """Turn scores into counts and a DataComp subset file; prints the selection folder last.

    \b
    Examples:
      filterbench sample top_fraction --scores 3fa2c1 -p fraction=0.3
      filterbench sample soft_cap --scores 3fa2c1 --scale nano -o samples_seen=48000
      filterbench sample all --pool ./pool
    """
    from filterbench import get_sampler
    from filterbench.harness.config import resolve_run_config
    from filterbench.harness.stages.sample import run_sample

    aliased = (f"samples_seen={samples_seen}",) if samples_seen is not None else ()
    config = resolve_run_config(workdir=workdir, scale=scale, overrides=overrides_from(overrides, aliased),
                                world=world, pool=pool_dir, stages=("sample",), log=echo_log,
                                executor=executor_spec(executor_name, workers, ray_address, submit, slurm_options))
    store = get_store(config.workdir)
    sampler = get_sampler(sampler_name, **parse_params(params))
    artifacts = [store.find(ref, kind="scores") for ref in score_refs]
    if not artifacts:
        artifacts = [_no_score_input(store, config)]
    budget = config.scale.row.budget(0) if config.scale is not None else None  # run_sample sets the pool size
    artifact = run_sample(store, sampler, artifacts, budget=budget, seed=seed, executor=config.executor)
    stats = artifact.manifest["stats"]
    click.echo(f"kept {stats['unique_uids']:,} unique uids of {stats['pool_size']:,}; total {stats['total']:,}; "
               f"max count {stats['max_count']}")
    click.echo(str(artifact.path))


def _no_score_input(store, config):
    """Samplers that read no score still need the pool's uids: score it with the trivial `constant` input."""
    if config.world is None or config.world.pool is None:
        raise click.UsageError("give --scores (or --pool / --world for samplers that read no scores)")
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.uidscorer import UidOnlyScorer

    return run_score(store, Pool(config.pool), UidOnlyScorer(), progress=False)


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


@click.command("run-unit")
@click.argument("plan", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--element", type=click.IntRange(min=0), required=True, help="Array element ($SLURM_ARRAY_TASK_ID).")
@click.option("--elements", type=COUNT, required=True, help="Elements of the array (as the script says).")
@one_line_errors
def run_unit(plan: Path, element: int, elements: int) -> None:
    """Run one Slurm array element's units of a plan folder (what `--executor slurm` scripts call).

    Units with a result are skipped, so a requeued or repeated element is harmless; prints the units it ran.

    \b
    Examples:
      filterbench run-unit filterbench-work/slurm/scoretask-1a2b3c4d5e6f7a8b --elements 4 --element 0
    """
    from filterbench.harness.slurm import run_element

    ran = run_element(plan, element, elements)
    click.echo(f"element {element}: ran {len(ran)} unit(s) {ran}")
