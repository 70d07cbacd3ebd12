"""``filterbench leaderboard build|show``: regenerate the board from records, inspect one record."""

from __future__ import annotations

import json
from pathlib import Path

import click
from filterbench.harness.cli.common import one_line_errors, print_json


@click.group()
def leaderboard() -> None:
    """Run records (ID cards) and the leaderboard generated from them (docs/leaderboard.md)."""


@leaderboard.command()
@click.option("--records", "records_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Records folder (default: the repository's leaderboard/records).")
@click.option("--scale", default=None,
              help="Only this scale's sections (the committed board has every scale).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: the repository's leaderboard/).")
@click.option("--reference", "reference_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Published numbers (default: baselines/reference.csv).")
@click.option("--check", is_flag=True,
              help="Write nothing; fail if the files in --out differ from a fresh build.")
@one_line_errors
def build(records_dir: Path | None, scale: str | None, out_dir: Path | None, reference_csv: Path | None,
          check: bool) -> None:
    """Regenerate LEADERBOARD.md, leaderboard.csv and leaderboard.html from the records only.

    Prints the written paths, the HTML page last.  With --check, names the stale files and exits 2.

    \b
    Examples:
      filterbench leaderboard build
      filterbench leaderboard build --check
    """
    from filterbench.leaderboard.aggregate import LeaderboardError
    from filterbench.leaderboard.build import build_leaderboard, check_leaderboard

    if check:
        stale = check_leaderboard(records_dir, out_dir, scale, reference_csv)
        if stale:
            names = ", ".join(str(p) for p in stale)
            raise LeaderboardError(f"stale leaderboard file(s): {names}; run `filterbench leaderboard build`")
        click.echo("leaderboard is up to date")
        return
    for path in build_leaderboard(records_dir, out_dir, scale, reference_csv):
        click.echo(str(path))


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
