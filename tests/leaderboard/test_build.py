"""The board: deterministic bytes, exact numbers, escaping, --check, CLI, and a fresh committed board."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner
from filterbench.leaderboard.build import build_leaderboard, check_leaderboard, md_escape
from filterbench.leaderboard.records import write_record

GOLDEN = Path(__file__).parent / "golden"
T_975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student's t 97.5% quantile, 2 dof: (2p-1)/sqrt(2p(1-p))
SCORES = {  # recipe -> group -> per-seed values (seeds 0, 1, 2)
    "clip_score_l14_top30": {"ImageNet": (0.050, 0.051, 0.053),
                             "ImageNet dist. shifts": (0.054, 0.055, 0.057),
                             "VTAB": (0.188, 0.190, 0.195), "Retrieval": (0.117, 0.119, 0.122),
                             "Average": (0.171, 0.173, 0.178)},
    "no_filter": {"ImageNet": (0.024, 0.025, 0.027), "ImageNet dist. shifts": (0.032, 0.033, 0.034),
                  "VTAB": (0.143, 0.145, 0.148), "Retrieval": (0.113, 0.114, 0.116),
                  "Average": (0.130, 0.132, 0.134)},
}
SCORE_CPU = {"clip_score_l14_top30": (20.0, 22.0, 27.0), "no_filter": None}
REFERENCE = ("recipe,scale,imagenet,imagenet_dist_shifts,vtab,retrieval,average,source\n"
             "no_filter,small,0.025,0.033,0.145,0.114,0.132,DataComp Table 3\n"
             "clip_score_l14_top30,small,0.051,0.055,0.190,0.119,0.173,DataComp Table 3\n")


def golden_records(fake_record) -> list[dict]:
    """2 recipes x 3 seeds at scale small; no_filter has no scoring stage (its scoring cost is 0)."""
    records = []
    for recipe, groups in SCORES.items():
        for seed in range(3):
            extra = {}
            if SCORE_CPU[recipe] is None:
                extra = {"compute": {"sample": {"wall_s": 0.5, "cpu_s": 0.25 + seed}, "train": {"wall_s": 90.0 + seed},
                                     "eval": {"wall_s": 30.0}},
                         "selection": {"mode": "subset", "pool_size": 1000, "unique_uids": 1000,
                                       "total": 1000, "max_count": 1}}
            else:
                extra = {"compute": {"score": {"wall_s": 5.0, "cpu_s": SCORE_CPU[recipe][seed], "gpu_s": 1.5},
                                     "train": {"wall_s": 100.0 + seed}}}
            per_seed = {g: v[seed] for g, v in groups.items()}
            records.append(fake_record(recipe=recipe, seed=seed, groups=per_seed, **extra))
    return records


GOLDEN_RECIPES = {  # the recipe files the golden board reads (versions and resources), not the repository's
    "clip_score_l14_top30": "resources: {class: public, uses: [OpenAI CLIP ViT-L/14]}\n",
    "no_filter": "resources: {class: public, uses: []}\n",
}


@pytest.fixture()
def golden_dir(fake_record, records_dir, tmp_path, monkeypatch):
    for record in golden_records(fake_record):
        write_record(record, records_dir)
    reference = tmp_path / "reference.csv"
    reference.write_text(REFERENCE)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name, extra in GOLDEN_RECIPES.items():
        (recipes / f"{name}.yaml").write_text(f"version: 1\nname: {name}\nsampler: {{name: all}}\n{extra}")
    monkeypatch.setattr("filterbench.harness.recipes.BASELINES_DIR", recipes)
    return records_dir, reference


def _rows(csv_path: Path) -> dict[str, dict[str, str]]:
    return {row["recipe"]: row for row in csv.DictReader(io.StringIO(csv_path.read_text()))}


def test_golden_numbers_in_the_csv(golden_dir, tmp_path):
    records_dir, reference = golden_dir
    paths = build_leaderboard(records_dir, tmp_path / "out", reference_csv=reference)
    assert [p.name for p in paths] == ["LEADERBOARD.md", "leaderboard.csv", "leaderboard.html"]
    rows = _rows(paths[1])
    assert [r["recipe"] for r in rows.values()] == ["clip_score_l14_top30", "no_filter"]  # Average descending
    for recipe, groups in SCORES.items():
        row = rows[recipe]
        assert (row["rank"], row["n_seeds"], row["seeds"]) == (str(1 + (recipe == "no_filter")), "3", "0 1 2")
        for group, values in groups.items():
            slug = group.lower().replace(" dist. ", "_dist_")
            sd = statistics.stdev(values)
            assert row[f"{slug}_mean"] == f"{statistics.mean(values):.6f}"
            assert row[f"{slug}_std"] == f"{sd:.6f}"
            assert row[f"{slug}_ci95"] == f"{T_975_DF2 * sd / math.sqrt(3):.6f}"
    assert rows["clip_score_l14_top30"]["average_published"] == "0.173000"
    assert rows["no_filter"]["imagenet_published"] == "0.025000"
    clip_cpu = statistics.mean(SCORE_CPU["clip_score_l14_top30"])
    assert rows["clip_score_l14_top30"]["score_cpu_s"] == f"{clip_cpu:.3f}"
    assert rows["clip_score_l14_top30"]["score_gpu_s"] == "1.500"
    assert (rows["no_filter"]["score_cpu_s"], rows["no_filter"]["train_wall_s"]) == ("0.000", "91.000")
    assert rows["no_filter"]["sample_cpu_s"] == "1.250"  # the sample stage's CPU seconds, mean over seeds
    assert rows["clip_score_l14_top30"]["sample_cpu_s"] == ""  # a seed without a sample stage: no mean
    assert rows["no_filter"]["unique_uids"] == "1000.0"
    assert rows["no_filter"]["published_source"] == "DataComp Table 3"


def test_golden_files_byte_for_byte(golden_dir, tmp_path):
    """Markdown and CSV of the golden records (FILTERBENCH_REGEN_GOLDEN=1 rewrites them after a change)."""
    records_dir, reference = golden_dir
    out = tmp_path / "out"
    build_leaderboard(records_dir, out, reference_csv=reference)
    for name in ("LEADERBOARD.md", "leaderboard.csv"):
        if os.environ.get("FILTERBENCH_REGEN_GOLDEN"):
            GOLDEN.mkdir(exist_ok=True)
            (GOLDEN / name).write_bytes((out / name).read_bytes())
        assert (out / name).read_bytes() == (GOLDEN / name).read_bytes(), f"{name} differs from golden/{name}"


def test_build_is_deterministic_and_independent_of_file_order(golden_dir, fake_record, tmp_path):
    records_dir, reference = golden_dir
    first, second = build_leaderboard(records_dir, tmp_path / "a", reference_csv=reference), \
        build_leaderboard(records_dir, tmp_path / "b", reference_csv=reference)
    other = tmp_path / "other-records" / "small"
    other.mkdir(parents=True)
    shuffled = golden_records(fake_record)
    random.Random(7).shuffle(shuffled)
    for i, record in enumerate(shuffled):  # other names, other creation order
        (other / f"{i:03d}-{len(shuffled) - i}.json").write_text(json.dumps(record, indent=4))
    third = build_leaderboard(other.parent, tmp_path / "c", reference_csv=reference)
    for a, b, c in zip(first, second, third):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes(), a.name
    assert all(b"2025-01-01" not in p.read_bytes() for p in first)  # the records' created_at never shows


def test_ties_missing_scores_and_single_seeds(fake_record, records_dir, no_reference, tmp_path):
    groups = {"ImageNet": 0.05, "Average": 0.2}
    for recipe, imagenet in (("b_tie", 0.05), ("a_tie", 0.05), ("c_better_imagenet", 0.06)):
        write_record(fake_record(recipe=recipe, groups={**groups, "ImageNet": imagenet}), records_dir)
    write_record(fake_record(recipe="incomplete", groups={"ImageNet": 0.9, "Average": None},
                             missing_tasks=["vtab/svhn"]), records_dir)
    paths = build_leaderboard(records_dir, tmp_path / "out", reference_csv=no_reference)
    rows = list(_rows(paths[1]).values())
    assert [r["recipe"] for r in rows] == ["c_better_imagenet", "a_tie", "b_tie", "incomplete"]
    assert rows[0]["average_ci95"] == "" and rows[3]["average_mean"] == ""
    assert rows[3]["missing_tasks"] == "vtab/svhn"
    md = paths[0].read_text()
    assert "| 0.200 ± — |" in md and "| 4 | incomplete |" in md


def test_a_seed_missing_a_group_leaves_the_mean_empty(fake_record, records_dir, no_reference, tmp_path):
    # (the Average covers every scored task, so a seed missing ImageNet has no Average either: DataComp's rule,
    # which the board checks by recomputing each record's groups from its task metrics)
    write_record(fake_record(seed=0, groups={"ImageNet": 0.05, "Average": 0.2}), records_dir)
    write_record(fake_record(seed=1, groups={"ImageNet": None, "Average": None}), records_dir)
    paths = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    row = next(iter(_rows(paths[1]).values()))
    assert row["imagenet_mean"] == "" and row["average_mean"] == "" and row["n_seeds"] == "2"


def test_unofficial_runs_are_a_separate_section(fake_record, records_dir, no_reference, tmp_path):
    write_record(fake_record(), records_dir)
    write_record(fake_record(official=False), records_dir)
    paths = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    md = paths[0].read_text()
    assert md.index("### Official runs") < md.index("### Unofficial runs") and "| lr |" in md
    sections = [r["section"] for r in csv.DictReader(io.StringIO(paths[1].read_text()))]
    assert sections == ["official", "unofficial"]


def test_oracle_precision_and_recall(fake_record, records_dir, no_reference, tmp_path):
    oracle = {"clean": {"total": 400, "kept": 350}, "misaligned": {"total": 300, "kept": 50},
              "boilerplate": {"total": 300, "kept": 200}}
    groups = {"Objects": 0.4, "Average": 0.3}
    write_record(fake_record(scale="nano", groups=groups, oracle=oracle), records_dir)
    paths = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    # removed: clean 50, misaligned 250, boilerplate 100 (400 in all); kept 600, of which 350 clean
    md = paths[0].read_text()
    assert "| Recipe | boilerplate | misaligned | any noise | Clean share of kept |" in md
    assert f"| 0.250 / 0.333 | 0.625 / 0.833 | 0.875 / {350 / 600:.3f} | {350 / 600:.3f} |" in md
    html = paths[2].read_text()
    assert 'id="oracle-0"' in html and "misaligned P" in html


def test_every_record_string_is_escaped(fake_record, records_dir, no_reference, tmp_path):
    evil = "<script>alert(1)</script>"
    write_record(fake_record(recipe=evil), records_dir)
    write_record(fake_record(recipe="a|b*c", scale="nano", groups={"<img src=x onerror=alert(2)>": 0.1,
                                                                   "Average": 0.2},
                             oracle={"<b>bold</b>": {"total": 2, "kept": 1}}), records_dir)
    md, csv_path, html_path = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    html = html_path.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and evil not in html
    assert html.count("<script") == 1  # only the sorting script
    assert "<img" not in html and "<b>" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    text = md.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script" not in text and "<img" not in text
    assert r"a\|b\*c" in text
    assert evil in csv_path.read_text()  # CSV is data: quoted by the csv module, not HTML-escaped


def test_md_escape():
    assert md_escape("a_b [x](y) `c` <d> & e\nf") == r"a\_b \[x\](y) \`c\` &lt;d&gt; &amp; e f"


def test_check_detects_stale_and_missing_files(golden_dir, fake_record, tmp_path):
    records_dir, reference = golden_dir
    out = tmp_path / "out"
    paths = build_leaderboard(records_dir, out, reference_csv=reference)
    assert check_leaderboard(records_dir, out, reference_csv=reference) == []
    paths[1].write_text(paths[1].read_text().replace("0.173000", "0.999000"))
    paths[2].unlink()
    assert check_leaderboard(records_dir, out, reference_csv=reference) == [paths[1], paths[2]]
    build_leaderboard(records_dir, out, reference_csv=reference)
    write_record(fake_record(recipe="new_method"), records_dir)
    assert check_leaderboard(records_dir, out, reference_csv=reference) == paths


def test_cli_build_check_and_show(golden_dir, tmp_path):
    from filterbench.harness.cli import cli

    records_dir, reference = golden_dir
    out = tmp_path / "out"
    common = ["--records", str(records_dir), "--out", str(out), "--reference", str(reference)]
    result = CliRunner().invoke(cli, ["leaderboard", "build", *common])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out / "leaderboard.html")
    assert CliRunner().invoke(cli, ["leaderboard", "build", "--check", *common]).exit_code == 0
    (out / "LEADERBOARD.md").write_text("hand edit\n")
    stale = CliRunner().invoke(cli, ["leaderboard", "build", "--check", *common])
    assert stale.exit_code == 2 and "stale leaderboard file(s)" in stale.output
    assert "LEADERBOARD.md" in stale.output
    record_file = min(records_dir.rglob("*.json"))
    shown = CliRunner().invoke(cli, ["leaderboard", "show", str(record_file)])
    assert shown.exit_code == 0 and json.loads(shown.output)["recipe"]["name"] == "clip_score_l14_top30"
    record_file.write_text(record_file.read_text().replace('"seed": 0', '"seed": 5'))
    bad = CliRunner().invoke(cli, ["leaderboard", "show", str(record_file)])
    assert bad.exit_code == 2 and "digest mismatch" in bad.output and record_file.name in bad.output


def test_bad_reference_file_is_reported(fake_record, records_dir, tmp_path):
    from filterbench.leaderboard.aggregate import LeaderboardError

    write_record(fake_record(), records_dir)
    reference = tmp_path / "reference.csv"
    reference.write_text("recipe,scale,average\nx,small,0.1\n")
    with pytest.raises(LeaderboardError, match="header must be"):
        build_leaderboard(records_dir, tmp_path / "o", reference_csv=reference)
    reference.write_text(REFERENCE.splitlines()[0] + "\nx,small,0.1,,,,high,paper\n")
    with pytest.raises(LeaderboardError, match=r"reference.csv:2: average 'high' is not a number"):
        build_leaderboard(records_dir, tmp_path / "o", reference_csv=reference)


def test_committed_board_is_fresh():
    """Rebuilding from the committed records reproduces the committed files byte for byte."""
    stale = check_leaderboard()
    assert stale == [], f"stale: {stale}; run `filterbench leaderboard build` and commit the result"


def test_csv_cells_that_start_like_a_formula_are_neutralised(fake_record, records_dir, no_reference, tmp_path):
    """Issue 19.8: CSV cells starting with =, +, - or @ were written as they are (spreadsheet formula injection)."""
    hostile = ['=HYPERLINK("http://x.invalid","click")', "+1+1", "-2+3", "@SUM(A1:A9)"]
    for i, recipe in enumerate(hostile):
        write_record(fake_record(recipe=recipe, groups={"ImageNet": 0.01 * (i + 1), "Average": -0.5 + 0.01 * i},
                                 overrides={"=cmd": 1}, official=False), records_dir)
    csv_path = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)[1]
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert sorted(r["recipe"] for r in rows) == sorted("'" + name for name in hostile)
    assert all(r["overrides"] == "'=cmd" for r in rows)
    assert {r["average_mean"] for r in rows} == {"-0.500000", "-0.490000", "-0.480000", "-0.470000"}  # numbers stay
    for row in rows:
        assert not any(str(cell).startswith(("=", "+", "@")) for cell in row.values()), row


def test_records_of_ones_own_task_list_are_checked_against_it(fake_record, records_dir, no_reference, tmp_path,
                                                              monkeypatch):
    """The board recomputes every record's groups from its task list, so it must find that file: a task list of
    one's own is refused by default, naming the way to add its folder, and checked once added."""
    import shutil

    from filterbench.harness.cli import cli
    from filterbench.harness.evaluation import tasklist as tasklists
    from filterbench.leaderboard import declarations

    record = fake_record(recipe="mine", official=False)
    write_record(record, records_dir)
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(declarations._tasklists_by_sha(declarations.tasklist_dirs())[record["tasklist"]["sha256"]], mine)
    monkeypatch.setattr(declarations, "TASKLIST_DIRS", declarations.TASKLIST_DIRS[:-1])  # not the fake folder
    monkeypatch.setattr(tasklists, "_search_dirs", list(tasklists._search_dirs))  # forget --tasklists afterwards
    common = ["leaderboard", "build", "--records", str(records_dir), "--out", str(tmp_path / "out"),
              "--reference", str(no_reference)]
    refused = CliRunner().invoke(cli, common)
    assert refused.exit_code == 2 and "its groups cannot be checked (add its folder with --tasklists)" in \
        refused.output, refused.output
    built = CliRunner().invoke(cli, [*common, "--tasklists", str(mine)])
    assert built.exit_code == 0, built.output
    assert "mine" in (tmp_path / "out" / "LEADERBOARD.md").read_text()


def test_records_from_two_pool_builds_are_named_under_the_table(fake_record, records_dir, no_reference, tmp_path):
    def keys(recipe: str, pool: str) -> dict:
        base = fake_record(recipe=recipe)["keys"]
        return {**base, "pool": pool}

    write_record(fake_record(recipe="on_first_build", keys=keys("on_first_build", "a" * 16)), records_dir)
    write_record(fake_record(recipe="on_second_build", keys=keys("on_second_build", "b" * 16)), records_dir)
    md = build_leaderboard(records_dir, tmp_path / "two", reference_csv=no_reference)[0].read_text()
    assert "come from 2 builds of the pool" in md
    assert f"- pool {'a' * 16}: {md_escape('on_first_build')}" in md
    assert f"- pool {'b' * 16}: {md_escape('on_second_build')}" in md

    same = tmp_path / "same"
    write_record(fake_record(recipe="x", keys=keys("x", "a" * 16)), same)
    write_record(fake_record(recipe="y", keys=keys("y", "a" * 16)), same)
    md = build_leaderboard(same, tmp_path / "one", reference_csv=no_reference)[0].read_text()
    assert "builds of the pool" not in md
