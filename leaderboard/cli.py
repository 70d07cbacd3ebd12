"""``filterbench leaderboard build|add|compare|show``: build the board, publish records to it, compare two recipes,
inspect a record.  The group enters the CLI through the ``leaderboard`` plugin (:mod:`.plugin`)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from filterbench.harness.cli.common import one_line_errors, print_json


@click.group()
def leaderboard() -> None:
    """Run records (ID cards) and the leaderboard generated from them (docs/leaderboard.md)."""


def _against(values: tuple[str, ...]) -> dict[str, str]:
    """``--against RECIPE`` (every scale) and ``--against SCALE=RECIPE`` (one scale): scale -> recipe."""
    out = {}
    for value in values:
        scale, _, recipe = value.rpartition("=")
        if not recipe:
            raise click.BadParameter(f"{value!r}: give RECIPE or SCALE=RECIPE", param_hint="--against")
        out[scale] = recipe
    return out


def _tasklists_option(func):
    """``--tasklists DIR``: folders holding the task lists of records made with a task list of one's own."""

    def register(ctx, param, folders):
        from filterbench.harness.evaluation.tasklist import register_tasklist_dir

        for folder in folders:
            register_tasklist_dir(folder.resolve())
        return folders

    return click.option("--tasklists", multiple=True, expose_value=False, callback=register,
                        type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help="A folder of task lists that records name besides the repository's. Repeatable.")(func)


@leaderboard.command()
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Records folder (default: the repository's leaderboard/records).")
@_tasklists_option
@click.option("--scale", default=None,
              help="Only this scale's sections (the committed board has every scale).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: the repository's leaderboard/).")
@click.option("--reference", "reference_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Published numbers (default: baselines/reference.csv).")
@click.option("--against", "against", multiple=True, metavar="[SCALE=]RECIPE",
              help="Reference recipe of the paired comparisons (default clip_score_l14_top30); SCALE=RECIPE "
                   "sets one scale's. Repeatable. The committed board uses the default.")
@click.option("--check", is_flag=True,
              help="Write nothing; fail if the files in --out differ from a fresh build.")
@one_line_errors
def build(records_dir: Path | None, scale: str | None, out_dir: Path | None, reference_csv: Path | None,
          against: tuple[str, ...], check: bool) -> None:
    """Regenerate LEADERBOARD.md, leaderboard.csv and leaderboard.html from the records only.

    Prints the written paths, the HTML page last.  With --check, names the stale files and exits 2.

    \b
    Examples:
      filterbench leaderboard build
      filterbench leaderboard build --check
    """
    from filterbench.leaderboard.aggregate import LeaderboardError
    from filterbench.leaderboard.build import build_leaderboard, check_leaderboard

    references = _against(against)
    if check:
        stale = check_leaderboard(records_dir, out_dir, scale, reference_csv, references)
        if stale:
            names = ", ".join(str(p) for p in stale)
            raise LeaderboardError(f"stale leaderboard file(s): {names}; run `filterbench leaderboard build`")
        click.echo("leaderboard is up to date")
        return
    for path in build_leaderboard(records_dir, out_dir, scale, reference_csv, references):
        click.echo(str(path))


@leaderboard.command()
@click.argument("recipe_a", metavar="A")
@click.argument("recipe_b", metavar="B")
@click.option("--scale", default=None, help="Only this scale (default: every scale where both ran).")
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Records folder (default: the repository's leaderboard/records).")
@_tasklists_option
@one_line_errors
def compare(recipe_a: str, recipe_b: str, scale: str | None, records_dir: Path | None) -> None:
    """Paired comparison of recipe A against recipe B: A − B per headline group, same seed against same seed.

    Prints each group's means, the mean paired difference with its 95% t interval (n − 1 degrees of
    freedom), its p-value and whether the interval excludes 0; Welch's unpaired interval when the two
    recipes share fewer than 2 seeds.  Exits 2 when the two recipes never ran in the same section.

    \b
    Examples:
      filterbench leaderboard compare image_based_clip_score_l14_top30 clip_score_l14_top30
      filterbench leaderboard compare oracle clip_score_l14_top30 --scale nano
    """
    from filterbench.leaderboard.aggregate import LeaderboardError, board_sections
    from filterbench.leaderboard.compare import compare_lines, comparable_sections
    from filterbench.leaderboard.records import load_records

    found = comparable_sections(board_sections(load_records(records_dir, scale=scale)), recipe_a, recipe_b)
    if not found:
        where = f" at scale {scale}" if scale else ""
        raise LeaderboardError(f"no section{where} has runs of both {recipe_a!r} and {recipe_b!r}")
    for i, (section, a, b) in enumerate(found):
        click.echo(("\n" if i else "") + "\n".join(compare_lines(section, a, b)))


@leaderboard.command()
@click.argument("record_file", metavar="RECORD", type=click.Path(dir_okay=False, path_type=Path))
@one_line_errors
def show(record_file: Path) -> None:
    """Validate one record (schema and digest) and print it.

    \b
    Examples:
      filterbench leaderboard show leaderboard/records/nano/no_filter-seed0-0123456789ab.json
      filterbench leaderboard show ./my-record.json
    """
    from filterbench.leaderboard.records import read_record

    record = read_record(record_file)
    print_json(json.loads(record.model_dump_json()))


@leaderboard.command()
@click.argument("sources", metavar="RECORDS...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--to", "records_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Records folder to publish into (default: leaderboard/records of this checkout).")
@one_line_errors
def add(sources: tuple[Path, ...], records_dir: Path | None) -> None:
    """Publish run records to the committed board: validate each (schema and digest), copy it into the records
    folder (replacing an earlier record of the same run) and rebuild the board beside that folder.

    RECORDS are record files or folders of them (a run's --records folder, default <workdir>/records).

    \b
    Examples:
      filterbench leaderboard add filterbench-work/records
      filterbench leaderboard add ./my-record.json --to /path/to/checkout/leaderboard/records
    """
    from filterbench.leaderboard.publish import publish

    for path in publish(list(sources), records_dir):
        click.echo(str(path))
