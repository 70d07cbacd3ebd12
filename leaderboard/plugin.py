"""The leaderboard as a built-in plugin: the ``filterbench leaderboard`` commands, and a board rebuilt beside the
records folder whenever ``filterbench run`` has written records into it.

The harness never imports the leaderboard; it reaches it through these two hooks.
"""

from __future__ import annotations

from pathlib import Path

from filterbench.harness.hookspecs import hookimpl


@hookimpl
def register_commands(cli):
    from filterbench.leaderboard.cli import leaderboard

    cli.add_command(leaderboard)


@hookimpl
def records_written(records_dir: Path, records: list[Path]) -> dict[str, Path] | None:
    """Rebuild LEADERBOARD.md, leaderboard.csv and leaderboard.html in the folder above ``records_dir``."""
    from filterbench.leaderboard.build import build_leaderboard

    if not records:
        return None
    written = build_leaderboard(records_dir, Path(records_dir).parent)
    return {"leaderboard": written[-1]} if written else None
