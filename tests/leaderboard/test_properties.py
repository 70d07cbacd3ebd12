"""Property tests (hypothesis): a record survives write -> read unchanged, and the board shows what the records
hold (means over seeds, names as text even when they look like spreadsheet formulas)."""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filterbench.leaderboard.build import build_leaderboard
from filterbench.leaderboard.records import load_records, make_record, read_record, write_record

NAME = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=24).filter(
    lambda s: s.strip() == s and s.strip())
SCORE = st.floats(0.0, 1.0, allow_nan=False)
RUN = st.tuples(NAME, st.lists(st.tuples(SCORE, SCORE), min_size=1, max_size=3))
FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15)


@FIXTURES
@given(NAME, st.integers(0, 10**6), SCORE, SCORE)
def test_a_record_round_trips_through_its_file(record_fields, name, seed, imagenet, average):
    record = make_record(**record_fields(recipe=name, seed=seed, groups={"ImageNet": imagenet, "Average": average}))
    with tempfile.TemporaryDirectory() as folder:
        path = write_record(record, folder)
        loaded = read_record(path)
        assert loaded.model_dump(mode="json") == record
        assert [r.digest for r in load_records(folder)] == [record["digest"]]


@FIXTURES
@given(st.lists(RUN, min_size=1, max_size=4, unique_by=lambda run: run[0]))
def test_the_board_shows_the_mean_over_seeds_of_what_the_records_hold(record_fields, no_reference, runs):
    with tempfile.TemporaryDirectory() as folder:
        records = Path(folder) / "records"
        for name, seeds in runs:
            for seed, (imagenet, average) in enumerate(seeds):
                write_record(make_record(**record_fields(recipe=name, seed=seed,
                                                         groups={"ImageNet": imagenet, "Average": average})),
                             records)
        csv_path = build_leaderboard(records, Path(folder) / "board", reference_csv=no_reference)[1]
        rows = {row["recipe"]: row for row in csv.DictReader(io.StringIO(csv_path.read_text()))}
    for name, seeds in runs:
        shown = name if not name.startswith(("=", "+", "-", "@")) or _is_number(name) else "'" + name
        row = rows[shown]
        assert int(row["n_seeds"]) == len(seeds)
        mean = sum(a for _, a in seeds) / len(seeds)
        assert math.isclose(float(row["average_mean"]), mean, abs_tol=5e-7)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
