"""``filterbench nano``: build the embedded nano world and describe it.

The nano provider (:mod:`filterbench.plugins.nano_world`) attaches the click group :data:`nano` through the
``register_commands`` hook.  Heavy imports (torch, open_clip) happen inside the commands so ``--help`` stays
fast.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from filterbench.harness.cli.common import SEED, one_line_errors

SIZE_OPTION = click.option("--size", type=click.Choice(["xs", "default"]), default="default", show_default=True,
                           help="xs: tests and CI (~2 min); default: the benchmark world (~10 min).")
OUT_OPTION = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                          help="Folder for the world (default $FILTERBENCH_HOME/nano/<size>-<key>).")
SEED_OPTION = click.option("--seed", type=SEED, default=0, show_default=True, help="Root seed of the world.")


@click.group("nano")
def nano() -> None:
    """The embedded nano world: a procedural DataComp-format pool, reference models and eval suite.

    \b
    Examples:
      filterbench nano build --size xs
      filterbench nano info --size xs
    """


@nano.command("build")
@SIZE_OPTION
@OUT_OPTION
@SEED_OPTION
@click.option("--force", is_flag=True, help="Rebuild even if a complete world with the same key exists.")
@one_line_errors
def build(size: str, out: Path | None, seed: int, force: bool) -> None:
    """Build the nano world (idempotent: a complete world with the same key is reused).

    \b
    Examples:
      filterbench nano build --size xs --out /tmp/nano-xs
      filterbench nano build            # the default world, cached under $FILTERBENCH_HOME/nano/
    """
    from filterbench.harness.nano import build_world

    started = time.perf_counter()
    world = build_world(size, out=out, seed=seed, force=force, log=lambda line: click.echo(line, err=True))
    click.echo(f"nano world {world.size} (key {world.key}) at {world.root} "
               f"[{time.perf_counter() - started:.1f} s]")


@nano.command("info")
@SIZE_OPTION
@OUT_OPTION
@SEED_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's composition and zero-shot as JSON.")
@one_line_errors
def info(size: str, out: Path | None, seed: int, as_json: bool) -> None:
    """Print the world's composition and the reference models' zero-shot accuracy (builds on first use).

    \b
    Examples:
      filterbench nano info --size xs
      filterbench nano info --out /tmp/nano-xs --json
    """
    from filterbench.harness.nano import get_world

    world = get_world(size, root=out, seed=seed, log=lambda line: click.echo(line, err=True))
    manifest = world.manifest
    if as_json:
        click.echo(json.dumps({k: manifest[k] for k in ("key", "size", "composition", "zero_shot")}, indent=1,
                              sort_keys=True))
        return
    click.echo(f"nano world {manifest['size']} (key {manifest['key']}) at {world.root}")
    for line in format_info(manifest):
        click.echo(line)


def format_info(manifest: dict) -> list[str]:
    """The human-readable report of ``nano info``."""
    from filterbench.harness.nano.world import NOISE_TARGETS

    comp = manifest["composition"]
    scores = comp["clip_scores"]["l14"]
    header = (f"{'noise type':18} {'count':>7} {'share':>6} {'L14 mean':>9} {'AUC vs clean':>13} "
              f"{'L14 top 30%':>12}  targeted methods")
    lines = [f"\npool: {comp['rows']} rows", header]
    top = scores.get("top30_share", {})  # worlds built before v2 lack it
    for name, row in comp["noise_types"].items():
        auc, kept = scores["auc_clean_vs"].get(name), top.get(name)
        lines.append(f"{name:18} {row['count']:7d} {row['fraction']:6.3f} {scores['mean_by_noise_type'][name]:9.3f} "
                     f"{'' if auc is None else f'{auc:.3f}':>13} {'' if kept is None else f'{kept:.3f}':>12}  "
                     f"{NOISE_TARGETS[name]}")
    lines.append(f"\n{'concept decile':15} {'rows':>7} {'clean':>7}  classes (decile 0 = most frequent)")
    for decile, row in comp["concept_deciles"].items():
        lines.append(f"{decile:15} {row['count']:7d} {row['clean']:7d}  {', '.join(row['classes'])}")
    lines.append(f"head/torso/tail/none rows: {comp['head_tail']}; caption languages: {comp['caption_languages']}")
    lines.append(f"small images (<200 px): {comp['small_image']}, extreme aspect (>3): {comp['extreme_aspect']}, "
                 f"exact duplicates: {comp['exact_duplicates']}, images with drawn text: {comp['with_text_drawn']}")
    lines.extend(_zero_shot_lines(manifest["zero_shot"]))
    return lines


def _zero_shot_lines(zero_shot: dict) -> list[str]:
    from filterbench.harness.nano.evalsuite import TASKS

    roles = list(zero_shot)
    lines = [f"\nreference zero-shot {'':14} " + " ".join(f"{r:>7}" for r in roles) + "   chance  metric"]
    for key in (t.key for t in TASKS):  # task-list order (the manifest's keys are sorted)
        row = zero_shot[roles[0]]["tasks"][key]
        chance = "" if row["chance"] is None else f"{row['chance']:.3f}"
        values = " ".join(f"{zero_shot[r]['tasks'][key]['value']:7.3f}" for r in roles)
        lines.append(f"{key:34} {values}   {chance:>6}  {row['main_metric']}")
    for group in zero_shot[roles[0]]["scores"]:
        values = " ".join(f"{zero_shot[r]['scores'][group]:7.3f}" for r in roles)
        lines.append(f"{'[' + group + ']':34} {values}")
    return lines
