"""Records: a good one round-trips; tampered, malformed, misplaced or duplicate ones fail with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from filterbench.leaderboard.records import (
    load_records,
    make_record,
    oracle_counts,
    read_record,
    record_path,
    selection_stats,
    write_record,
)
from filterbench.leaderboard.schema import RECORD_VERSION, RecordError, record_digest, validate_record


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def test_good_record_round_trips(fake_record, records_dir):
    record = fake_record()
    path = write_record(record, records_dir)
    assert path == records_dir / "small" / f"clip_score_l14_top30-seed0-{record['keys']['eval'][:12]}.json"
    loaded = read_record(path)
    assert loaded.recipe.name == "clip_score_l14_top30" and loaded.record_version == RECORD_VERSION
    assert loaded.groups["Average"] == 0.17 and loaded.source == str(path)
    assert record["digest"] == record_digest(record) and record["oracle"] is None  # defaults are stored too
    assert [r.seed for r in load_records(records_dir)] == [0]


def test_edited_value_is_a_digest_mismatch(fake_record, records_dir):
    path = write_record(fake_record(), records_dir)
    _edit(path, lambda d: d["groups"].__setitem__("Average", 0.99))
    with pytest.raises(RecordError, match="digest mismatch") as info:
        read_record(path)
    assert str(path) in str(info.value)


def test_edit_that_pydantic_would_coerce_is_still_caught(fake_record, records_dir):
    path = write_record(fake_record(seed=3), records_dir)
    _edit(path, lambda d: d.__setitem__("seed", 3.0))  # the schema accepts 3.0 as 3; the digest does not
    with pytest.raises(RecordError, match="digest mismatch"):
        read_record(path)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda d: d.pop("seed"), "seed: Field required"),
    (lambda d: d.__setitem__("favourite", 1), "favourite: Extra inputs are not permitted"),
    (lambda d: d["keys"].__setitem__("eval", "not-a-key"), "keys.eval: String should match pattern"),
    (lambda d: d["selection"].__setitem__("unique_uids", 10**9), "unique_uids 1000000000 exceeds pool_size"),
    (lambda d: d.__setitem__("group_order", ["Average"]), "group_order"),
    (lambda d: d["plugins"][0].__setitem__("kind", "trainer"), "plugins.0.kind"),
    (lambda d: d.__setitem__("record_version", 99), "record_version 99 is not 1"),
])
def test_malformed_record_names_file_and_reason(fake_record, records_dir, change, reason):
    path = write_record(fake_record(), records_dir)
    _edit(path, change)
    with pytest.raises(RecordError) as info:
        read_record(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_unreadable_json_names_the_file(records_dir):
    (records_dir / "small").mkdir()
    bad = records_dir / "small" / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError, match="broken.json: unreadable record"):
        load_records(records_dir)


def test_make_record_rejects_bad_fields():
    with pytest.raises(RecordError, match=r"make_record: invalid record: .*scale: Field required"):
        make_record(recipe={"name": "x", "version": 1}, seed=0)
    with pytest.raises(RecordError, match="digest` is computed"):
        make_record(digest="sha256:" + "0" * 64)


def test_non_finite_metric_is_rejected(fake_record):
    with pytest.raises(RecordError, match="groups"):
        fake_record(groups={"ImageNet": float("nan"), "Average": 0.1})


def test_record_in_another_scales_folder_is_rejected(fake_record, records_dir):
    path = write_record(fake_record(), records_dir)
    moved = records_dir / "nano" / path.name
    moved.parent.mkdir()
    path.rename(moved)
    with pytest.raises(RecordError, match="stored under nano/ but its scale is 'small'"):
        load_records(records_dir)


def test_same_run_twice_is_rejected(fake_record, records_dir):
    record = fake_record()
    write_record(record, records_dir)
    copy = records_dir / "small" / "copy.json"
    copy.write_text(json.dumps(record))
    with pytest.raises(RecordError, match="same run as"):
        load_records(records_dir)


def test_scale_filter_and_hostile_names_stay_in_their_folder(fake_record, records_dir):
    write_record(fake_record(scale="nano"), records_dir)
    path = write_record(fake_record(recipe="../../<script>alert(1)</script>"), records_dir)
    assert path.parent == records_dir / "small" and path.name.startswith("script_alert_1_script-seed0-")
    assert [r.scale for r in load_records(records_dir, scale="nano")] == ["nano"]
    assert len(load_records(records_dir)) == 2


def test_validate_record_rejects_non_objects():
    with pytest.raises(RecordError, match="a record is a JSON object"):
        validate_record([1, 2], "x.json")


def test_selection_stats_and_oracle_counts():
    counts = np.array([0, 1, 3, 0, 2], dtype=np.uint32)
    assert selection_stats(counts, "multiset") == {"mode": "multiset", "pool_size": 5, "unique_uids": 3,
                                                   "total": 6, "max_count": 3}
    schedule = np.array([[0, 1, 0], [0, 1, 2]])
    assert selection_stats(schedule, "schedule")["max_count"] == 2
    types = ["clean", "clean", "misaligned", "misaligned", "misaligned"]
    expected = {"clean": {"total": 2, "kept": 1}, "misaligned": {"total": 3, "kept": 2}}
    assert oracle_counts(types, counts) == expected
    with pytest.raises(RecordError, match="oracle has 2 uids"):
        oracle_counts(types[:2], counts)


def test_record_path_uses_a_safe_file_name(fake_record, tmp_path):
    record = fake_record(recipe="a b/c")
    assert record_path(record, tmp_path).name.startswith("a_b_c-seed0-")


def test_record_from_evaluation_summary(fake_record):
    """The evaluation's summary (DataComp task list, one task missing) turns into a valid record."""
    from filterbench.harness.evaluation.aggregate import aggregate_rows
    from filterbench.harness.evaluation.tasklist import load_tasklist
    from filterbench.leaderboard.records import from_eval_summary

    tasklist = load_tasklist("datacomp_v1")
    rows = [{"key": t.key, "dataset": t.name, "metrics": {"main_metric": 0.5}}
            for t in tasklist.scored_tasks if t.key != "vtab/svhn"]
    fields = from_eval_summary(aggregate_rows(rows, tasklist))
    assert fields["group_order"] == ["ImageNet", "ImageNet dist. shifts", "VTAB", "Retrieval", "Average"]
    assert fields["average_group"] == "Average" and fields["missing_tasks"] == ["vtab/svhn"]
    assert fields["tasklist"]["sha256"] == tasklist.sha256
    record = fake_record(**fields)
    assert record["groups"]["VTAB"] is None and record["groups"]["ImageNet"] == 0.5
    assert record["metrics"]["vtab/svhn"] is None and len(record["metrics"]) == 38


def test_a_rerun_replaces_the_earlier_record_of_the_same_run(fake_record, records_dir):
    first = write_record(fake_record(seed=0), records_dir)
    other_seed = write_record(fake_record(seed=1), records_dir)
    rerun = fake_record(seed=0, keys={"pool": "a" * 16, "scores": [], "selection": "b" * 16, "train": "c" * 16,
                                      "eval": "d" * 16})
    second = write_record(rerun, records_dir)
    assert second != first and not first.exists() and other_seed.exists()
    loaded = load_records(records_dir)
    assert len(loaded) == 2 and next(r for r in loaded if r.seed == 0).keys.eval == "d" * 16


def _forge(path, change):
    """Edit a record and recompute its digest, as anyone who can run make_record can."""
    data = json.loads(path.read_text())
    change(data)
    data["digest"] = record_digest(data)
    path.write_text(json.dumps(data, indent=1))


def test_a_forged_group_with_a_recomputed_digest_is_refused(records_dir):
    """Issue 19.8: a committed record with a forged Average and a recomputed digest ranked first."""
    import shutil

    from filterbench.leaderboard.records import DEFAULT_RECORDS_DIR

    source = sorted((DEFAULT_RECORDS_DIR / "nano").glob("no_filter-seed0-*.json"))[0]  # a real run's record
    (records_dir / "nano").mkdir()
    path = records_dir / "nano" / source.name
    shutil.copy(source, path)
    assert len(load_records(records_dir)) == 1
    _forge(path, lambda d: d["groups"].__setitem__("Average", 0.99))
    read_record(path)  # the digest alone no longer catches it ...
    with pytest.raises(RecordError, match=rf"{path.name}: group 'Average' is 0.99 but the record's task metrics "
                                          r"give 0\.\d+ \(a forged or stale group score\)"):
        load_records(records_dir)  # ... the board's recomputation does
    shutil.copy(source, path)
    _forge(path, lambda d: d.__setitem__("missing_tasks", []) or d["metrics"].__setitem__("nano/texture", None))
    with pytest.raises(RecordError, match=r"group 'Average' is 0\.\d+ but the record's task metrics give None"):
        load_records(records_dir)
    shutil.copy(source, path)
    _forge(path, lambda d: d["tasklist"].__setitem__("sha256", "cd" * 32))
    with pytest.raises(RecordError, match=r"task list 'nano_v1' \(sha256 cdcdcdcdcdcd...\) is in none of .*"
                                          r"its groups cannot be checked"):
        load_records(records_dir)
