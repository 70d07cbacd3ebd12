"""summarize() against DataComp's aggregate_scores.py formulas, computed independently here."""

import json

import numpy as np
import pytest

from filterbench.harness.evaluation.aggregate import AGGREGATION_VERSION, summarize
from filterbench.harness.evaluation.tasklist import load_tasklist

# DataComp aggregate_scores.py DATASET_GROUPS, by display name, typed in independently of our YAML.
GROUPS = {
    "ImageNet dist. shifts": {
        "ImageNet Sketch",
        "ImageNet v2",
        "ImageNet-A",
        "ImageNet-O",
        "ImageNet-R",
        "ObjectNet",
    },
    "VTAB": {
        "Caltech-101",
        "CIFAR-100",
        "CLEVR Counts",
        "CLEVR Distance",
        "Describable Textures",
        "EuroSAT",
        "KITTI Vehicle Distance",
        "Oxford Flowers-102",
        "Oxford-IIIT Pet",
        "PatchCamelyon",
        "RESISC45",
        "SVHN",
        "SUN397",
    },
    "Retrieval": {"Flickr", "MSCOCO", "WinoGAViL"},
}


def _rows(seed=0):
    """40 rows as DataComp writes them: random main metrics, null for FairFace/UTKFace."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in load_tasklist("datacomp_v1").tasks:
        value = None if task.main_metric is None else float(rng.random())
        metrics = {"main_metric": value}
        if value is not None:
            metrics[task.main_metric] = value
        rows.append({"key": task.key, "dataset": task.name, "metrics": metrics})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _datacomp(rows):
    """aggregate_scores.get_aggregate_scores, re-derived: drop nulls, assert 38, means by display name."""
    results = {
        r["dataset"]: r["metrics"]["main_metric"] for r in rows if r["metrics"]["main_metric"] is not None
    }
    assert len(results) == 38
    out = {"ImageNet": results["ImageNet 1k"]}
    for group, names in GROUPS.items():
        out[group] = float(np.mean([results[n] for n in names]))
    out["Average"] = float(np.mean(list(results.values())))
    return out


def test_full_results_match_datacomp(tmp_path):
    rows = _rows()
    summary = summarize(_write(tmp_path / "r.jsonl", rows), "datacomp_v1")
    expected = _datacomp(rows)
    assert set(summary["scores"]) == set(expected)
    for group, value in expected.items():
        assert summary["scores"][group] == pytest.approx(value, abs=1e-9), group
    assert summary["complete"] and summary["missing_tasks"] == [] and summary["partial"] is None
    assert summary["n_scored_tasks"] == 38 and summary["n_present"] == 38
    assert summary["aggregation_version"] == AGGREGATION_VERSION
    assert summary["tasklist"]["sha256"] == load_tasklist("datacomp_v1").sha256
    assert summary["unscored_tasks"]["fairness/fairface"] == {"dataset": "FairFace", "present": True}
    json.dumps(summary, allow_nan=False)  # JSON-able, strictly


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_files_match_datacomp(tmp_path, seed):
    rows = _rows(seed)
    rng = np.random.default_rng(seed)
    rng.shuffle(rows)  # order of lines must not matter
    summary = summarize(_write(tmp_path / "r.jsonl", rows), "datacomp_v1")
    for group, value in _datacomp(rows).items():
        assert summary["scores"][group] == pytest.approx(value, abs=1e-9)


def test_missing_task_is_named_not_averaged_away(tmp_path):
    rows = [r for r in _rows() if r["key"] != "vtab/dtd"]
    summary = summarize(_write(tmp_path / "r.jsonl", rows), "datacomp_v1")
    assert summary["missing_tasks"] == ["vtab/dtd"] and not summary["complete"]
    assert summary["scores"]["VTAB"] is None and summary["scores"]["Average"] is None
    assert summary["scores"]["ImageNet"] is not None and summary["scores"]["Retrieval"] is not None
    present = {
        r["dataset"]: r["metrics"]["main_metric"] for r in rows if r["metrics"]["main_metric"] is not None
    }
    vtab = [present[n] for n in GROUPS["VTAB"] if n != "Describable Textures"]
    assert summary["partial"]["VTAB"] == pytest.approx(np.mean(vtab), abs=1e-9)
    assert summary["partial"]["Average"] == pytest.approx(np.mean(list(present.values())), abs=1e-9)
    assert summary["tasks"]["vtab/dtd"]["main_metric"] is None


def test_null_main_metric_counts_as_missing(tmp_path):
    rows = _rows()
    next(r for r in rows if r["key"] == "wilds/fmow")["metrics"]["main_metric"] = None
    summary = summarize(_write(tmp_path / "r.jsonl", rows), "datacomp_v1")
    assert summary["missing_tasks"] == ["wilds/fmow"]
    assert summary["null_main_metric_tasks"] == ["wilds/fmow"]
    assert summary["scores"]["Average"] is None


def test_duplicates_extras_and_unknown_rows(tmp_path):
    rows = _rows()
    dup = json.loads(json.dumps(rows[0]))
    dup["metrics"]["main_metric"] = 123.0  # a rerun appended later: the first line wins
    extra = {"key": "letitwag", "dataset": "Let It Wag!", "metrics": {"acc1": 0.25, "main_metric": 0.25}}
    other = {"key": "someone/else", "dataset": "Else", "metrics": {"main_metric": 0.9}}
    summary = summarize(_write(tmp_path / "r.jsonl", rows + [dup, extra, other]), "datacomp_v1")
    assert summary["duplicate_tasks"] == [rows[0]["key"]]
    assert summary["extras"]["letitwag"] == {"dataset": "Let It Wag!", "main_metric": 0.25, "present": True}
    assert summary["unknown_rows"] == ["someone/else"]
    assert summary["scores"]["Average"] == pytest.approx(_datacomp(rows)["Average"], abs=1e-9)


def test_rows_matched_by_display_name_when_key_differs(tmp_path):
    rows = _rows()
    for row in rows:
        if row["dataset"] == "Flickr":
            row["key"] = "retrieval/flickr30k"  # older DataComp task lists used this key
    summary = summarize(_write(tmp_path / "r.jsonl", rows), "datacomp_v1")
    assert summary["complete"]


def test_torn_last_line_is_ignored(tmp_path):
    rows = [r for r in _rows() if r["key"] != "fairness/geode"]
    geode = next(r for r in _rows() if r["key"] == "fairness/geode")
    path = _write(tmp_path / "r.jsonl", rows)
    with open(path, "a") as handle:
        handle.write(json.dumps(geode)[:25])  # a crash mid-write
    summary = summarize(path, "datacomp_v1")
    assert summary["torn_last_line"] is True
    assert summary["missing_tasks"] == ["fairness/geode"]
