"""Published reference numbers (``baselines/reference.csv``), keyed by (recipe, scale)."""

from __future__ import annotations

import csv
from pathlib import Path

REFERENCE_CSV = Path(__file__).resolve().parent.parent / "baselines" / "reference.csv"
#: CSV column -> headline group name used in eval summaries
GROUP_COLUMNS = {"imagenet": "ImageNet", "imagenet_dist_shifts": "ImageNet dist. shifts", "vtab": "VTAB",
                 "retrieval": "Retrieval", "average": "Average"}


def published_numbers(path: Path = REFERENCE_CSV) -> dict[tuple[str, str], dict[str, float]]:
    """``{(recipe, scale): {group: value}}`` for every row with at least one number."""
    if not path.exists():
        return {}
    out: dict[tuple[str, str], dict[str, float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            values = {group: float(row[col]) for col, group in GROUP_COLUMNS.items() if row.get(col)}
            if values:
                out[(row["recipe"], row["scale"])] = values
    return out
