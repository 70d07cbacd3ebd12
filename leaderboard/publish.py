"""Publishing run records to the committed board: ``filterbench leaderboard add RECORDS...``.

``filterbench run`` writes records under its work directory; the board of a checkout
(``leaderboard/records``) changes only through this explicit step (or ``run --records leaderboard/records``),
so that an installed package never writes into its own folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from filterbench.harness.recording import read_record, write_record
from filterbench.leaderboard.records import DEFAULT_RECORDS_DIR
from filterbench.leaderboard.schema import RecordError


def checkout_records_dir() -> Path:
    """``leaderboard/records`` of the checkout this package runs from; refused for an installed package."""
    root = DEFAULT_RECORDS_DIR.parent.parent
    if not (root / ".git").exists():
        raise RecordError(f"{root} is an installed package, not a checkout: give --to <checkout>/leaderboard/records")
    return DEFAULT_RECORDS_DIR


def record_files(sources: list[Path]) -> list[Path]:
    """The record files among ``sources`` (files, or folders searched recursively), sorted, each once."""
    files: set[Path] = set()
    for source in sources:
        found = sorted(p for p in source.rglob("*.json") if not p.name.startswith(".")) if source.is_dir() \
            else [source]
        if not found:
            raise RecordError(f"{source}: no record files")
        files.update(p.resolve() for p in found)
    return sorted(files)


def publish(sources: list[Path], records_dir: Path | None = None) -> list[Path]:
    """Validate and copy the records of ``sources`` into ``records_dir``, then rebuild the board beside it.

    Returns:
        The records written, then the board's files (the HTML page last).

    Raises:
        RecordError: a source is not a valid record (naming the file); nothing is copied then.
    """
    from filterbench.leaderboard.build import build_leaderboard

    target = Path(records_dir) if records_dir is not None else checkout_records_dir()
    files = record_files(sources)
    for path in files:
        read_record(path)  # every file validates before the first one is copied
    written = [write_record(json.loads(path.read_text(encoding="utf-8")), target) for path in files]
    return written + build_leaderboard(target, target.parent)
