"""The frozen DataComp task list and the task-list file format."""

import hashlib
import textwrap

import pytest

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.evaluation.tasklist import BUILTIN_DIR, folder_name, load_tasklist


def test_datacomp_v1_has_40_entries_38_scored():
    tl = load_tasklist("datacomp_v1")
    assert len(tl.tasks) == 40
    assert len(tl.scored_tasks) == 38
    assert {t.key for t in tl.tasks if not t.scored} == {"fairness/fairface", "fairness/utkface"}
    assert tl.version == 1 and tl.average_name == "Average" and tl.expected_scored == 38


def test_datacomp_v1_groups():
    tl = load_tasklist("datacomp_v1")
    assert {name: len(keys) for name, keys in tl.groups.items()} == {
        "ImageNet": 1,
        "ImageNet dist. shifts": 6,
        "VTAB": 13,
        "Retrieval": 3,
    }
    names = {g: {tl.task(k).name for k in keys} for g, keys in tl.groups.items()}
    assert names["Retrieval"] == {"Flickr", "MSCOCO", "WinoGAViL"}
    assert "SUN397" in names["VTAB"] and "CIFAR-10" not in names["VTAB"]
    # the VTAB group is exactly the tasks tagged vtab_*
    assert set(tl.groups["VTAB"]) == {t.key for t in tl.tasks if any(x.startswith("vtab_") for x in t.tags)}


def test_main_metrics_follow_datacomp():
    tl = load_tasklist("datacomp_v1")
    expected = {
        "vtab/caltech101": "mean_per_class_recall",
        "fgvc_aircraft": "mean_per_class_recall",
        "vtab/flowers": "mean_per_class_recall",
        "vtab/pets": "mean_per_class_recall",
        "retrieval/flickr_1k_test_image_text_retrieval": "mean_recall@1",
        "retrieval/mscoco_2014_5k_test_image_text_retrieval": "mean_recall@1",
        "misc/winogavil": "jaccard_score_10-12",
        "wilds/iwildcam": "F1-macro_all",
        "wilds/fmow": "acc_worst_region",
        "fairness/dollar_street": "acc_top5_wg",
        "fairness/geode": "acc_wg",
        "fairness/fairface": None,
        "fairness/utkface": None,
    }
    for task in tl.tasks:
        assert task.main_metric == expected.get(task.key, "acc1"), task.key


def test_sha256_is_the_file_bytes():
    tl = load_tasklist("datacomp_v1")
    assert tl.sha256 == hashlib.sha256((BUILTIN_DIR / "datacomp_v1.yaml").read_bytes()).hexdigest()
    assert load_tasklist(BUILTIN_DIR / "datacomp_v1.yaml").sha256 == tl.sha256


@pytest.mark.parametrize(
    "key, folder",
    [
        ("vtab/cifar100", "wds_vtab-cifar100_test"),
        ("wilds/fmow", "wds_wilds-fmow_test"),
        ("imagenet1k", "wds_imagenet1k_test"),
        ("fairness/dollar_street", "wds_dollar_street_test"),
        ("fairness/geode", "wds_geode_test"),
        ("fairness/fairface", "wds_fairface_test"),
        (
            "retrieval/mscoco_2014_5k_test_image_text_retrieval",
            "wds_retrieval-mscoco_2014_5k_test_image_text_retrieval_test",
        ),
    ],
)
def test_folder_names(key, folder):
    assert folder_name(key) == folder
    assert load_tasklist("datacomp_v1").task(key).folder == folder


NANO = """\
format: filterbench-tasklist/1
name: nano
version: 3
tasks:
  nano/shapes: {name: Shapes}
  nano/colors: {name: Colors, main_metric: mean_per_class_recall}
  nano/captions: {name: Captions, main_metric: mean_recall@1, evaluator: zeroshot_retrieval}
  nano/faces: {name: Faces, main_metric: null, evaluator: fairface}
groups:
  Objects: [nano/shapes, nano/colors]
average: {name: Mean, expected_tasks: 3}
"""


def test_custom_tasklist_format(tmp_path):
    path = tmp_path / "nano_v1.yaml"
    path.write_text(NANO)
    tl = load_tasklist(path)
    assert tl.name == "nano_v1" and tl.title == "nano" and tl.version == 3
    assert [t.key for t in tl.scored_tasks] == ["nano/shapes", "nano/colors", "nano/captions"]
    assert tl.groups == {"Objects": ("nano/shapes", "nano/colors")}
    assert tl.task("nano/shapes").main_metric == "acc1"
    assert tl.task("nano/captions").folder == "wds_nano-captions_test"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("Objects: [nano/shapes, nano/colors]", "Objects: [nano/shapes, nano/nope]"),
            "unknown task 'nano/nope'",
        ),
        (("Objects: [nano/shapes, nano/colors]", "Objects: [nano/faces]"), "unscored task"),
        (("expected_tasks: 3", "expected_tasks: 38"), "expected_tasks is 38"),
        (("evaluator: fairface", "evaluator: magic"), "unknown evaluator"),
        (("{name: Colors,", "{name: Shapes,"), "duplicate task name"),
        (("format: filterbench-tasklist/1", "format: other"), "format must be"),
    ],
)
def test_malformed_tasklists_name_the_file(tmp_path, edit, message):
    path = tmp_path / "bad.yaml"
    path.write_text(NANO.replace(*edit))
    with pytest.raises(FilterbenchError, match=message) as info:
        load_tasklist(path)
    assert "bad.yaml" in str(info.value) and "\n" not in str(info.value)


def test_unknown_names_fail_clearly(tmp_path):
    with pytest.raises(FilterbenchError, match="unknown task list 'nope'.*datacomp_v1"):
        load_tasklist("nope")
    with pytest.raises(FilterbenchError, match="not in task list datacomp_v1"):
        load_tasklist("datacomp_v1").task("imagenet22k")


def test_registered_dir_is_searched(tmp_path):
    from filterbench.harness.evaluation import tasklist as module

    (tmp_path / "nano_v9.yaml").write_text(textwrap.dedent(NANO))
    module.register_tasklist_dir(tmp_path)
    try:
        assert load_tasklist("nano_v9").title == "nano"
        assert "nano_v9" in module.available_tasklists()
    finally:
        module._search_dirs.remove(tmp_path)
