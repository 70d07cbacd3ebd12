"""What the board says under each table: paired column, recipe versions, resources, chance, rank agreement."""

from __future__ import annotations

import csv
import io
import math

import pytest
from click.testing import CliRunner
from filterbench.leaderboard.build import board_views, build_leaderboard
from filterbench.leaderboard.records import write_record
from filterbench.leaderboard.stats import paired_difference

NANO_TASKLIST = {"name": "nano_v1",
                 "sha256": "5b6a4c26b8df5f54f5b30c7400f5c76f2d8bc8c5d735a4ce243ab3d3ffc092ef"}
NEW_REFERENCE = "recipe,scale,imagenet,imagenet_dist_shifts,vtab,retrieval,average,resources,source\n"


def _write_recipes(folder, versions: dict[str, tuple[int, str | None]]):
    folder.mkdir(exist_ok=True)
    for name, (version, klass) in versions.items():
        extra = f"resources: {{class: {klass}, uses: [thing]}}\n" if klass else ""
        body = f"version: {version}\nname: {name}\nsampler: {{name: all}}\n{extra}"
        (folder / f"{name}.yaml").write_text(body)
    return folder


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _write(fake_fields, records_dir, recipe, averages, scale="small", version=1):
    """One record per seed; a version other than 1 gets its own artifact keys (other runs)."""
    from filterbench.harness.hashing import content_key
    from filterbench.leaderboard.records import make_record

    for seed, average in averages.items():
        fields = fake_fields(recipe=recipe, seed=seed, scale=scale,
                             groups={"ImageNet": average / 3, "Average": average})
        if version != 1:
            fields["recipe"]["version"] = version
            fields["keys"] = {k: v if k in ("pool", "scores") else content_key([k, recipe, seed, version])
                              for k, v in fields["keys"].items()}
        write_record(make_record(**fields), records_dir)


@pytest.fixture()
def recipes(tmp_path, monkeypatch):
    folder = _write_recipes(tmp_path / "recipes", {"clip_score_l14_top30": (2, "public"),
                                                   "base": (1, "public"), "dfn": (1, "private"),
                                                   "oracle": (1, "oracle")})
    monkeypatch.setattr("filterbench.harness.recipes.BASELINES_DIR", folder)
    return folder


def test_paired_column_and_welch_fallback(record_fields, records_dir, recipes, no_reference, tmp_path):
    ref = {0: 0.40, 1: 0.38, 2: 0.39}
    base = {0: 0.35, 1: 0.34, 2: 0.345}
    _write(record_fields, records_dir, "clip_score_l14_top30", ref)
    _write(record_fields, records_dir, "base", base)
    _write(record_fields, records_dir, "dfn", {7: 0.45, 8: 0.47})  # no shared seed: Welch
    md, csv_path, _ = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    rows = {r["recipe"]: r for r in _rows(csv_path)}
    d = paired_difference(base, ref)
    assert rows["base"]["versus_method"] == "paired" and rows["base"]["versus_seeds"] == "0 1 2"
    assert float(rows["base"]["versus_average_diff"]) == pytest.approx(d.mean, abs=1e-6)
    assert float(rows["base"]["versus_average_ci95"]) == pytest.approx(d.half_width, abs=1e-6)
    assert rows["dfn"]["versus_method"] == "welch" and rows["clip_score_l14_top30"]["versus_method"] == ""
    text = md.read_text()
    assert "| Δ Average vs clip\\_score\\_l14\\_top30 |" in text and "| reference |" in text
    assert f"| {d.mean:+.3f} ± {d.half_width:.3f} \\* |" in text and "(Welch) |" in text


def test_against_names_another_reference_per_scale(record_fields, records_dir, recipes,
                                                   no_reference, tmp_path):
    _write(record_fields, records_dir, "clip_score_l14_top30", {0: 0.40, 1: 0.38})
    _write(record_fields, records_dir, "base", {0: 0.35, 1: 0.34})
    views, _ = board_views(records_dir, reference_csv=no_reference, against={"small": "base"})
    assert views[0].analysis.reference.recipe == "base"
    assert views[0].analysis.versus["clip_score_l14_top30"].mean == pytest.approx(0.045)
    views, _ = board_views(records_dir, reference_csv=no_reference, against={"": "missing"})
    md = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference,
                           against={"": "missing"})[0]
    assert views[0].analysis.reference is None and "No official run of missing" in md.read_text()


def test_old_recipe_versions_are_kept_apart(record_fields, records_dir, recipes, no_reference, tmp_path):
    """v1 and v2 records of one recipe never blend: v2 is ranked and compared, v1 listed as superseded."""
    _write(record_fields, records_dir, "clip_score_l14_top30", {0: 0.30, 1: 0.31, 2: 0.32}, version=1)
    _write(record_fields, records_dir, "clip_score_l14_top30", {0: 0.40, 1: 0.41}, version=2)
    _write(record_fields, records_dir, "base", {0: 0.35, 1: 0.34, 2: 0.36})
    views, _ = board_views(records_dir, reference_csv=no_reference)
    section, analysis = views[0].section, views[0].analysis
    ranked = [(e.recipe, e.recipe_version) for e in section.entries]
    assert ranked == [("clip_score_l14_top30", 2), ("base", 1)]
    assert [(e.recipe, e.recipe_version, e.seeds) for e in section.superseded] == \
        [("clip_score_l14_top30", 1, (0, 1, 2))]
    assert analysis.reference.recipe_version == 2 and analysis.versus["base"].seeds == (0, 1)
    assert set(analysis.pairwise.recipes) == {"clip_score_l14_top30", "base"}
    md, csv_path, _ = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    statuses = [(r["recipe"], r["recipe_version"], r["rank"], r["status"]) for r in _rows(csv_path)]
    assert statuses == [("clip_score_l14_top30", "2", "1", "ranked"), ("base", "1", "2", "ranked"),
                        ("clip_score_l14_top30", "1", "", "superseded")]
    assert "version 1 (3 seed(s), Average 0.310): superseded" in md.read_text().replace("\\_", "_")


def test_records_older_than_their_recipe_file_are_marked(record_fields, records_dir, recipes,
                                                         no_reference, tmp_path):
    _write(record_fields, records_dir, "clip_score_l14_top30", {0: 0.40, 1: 0.38})  # the file is version 2
    md, csv_path, _ = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    row = _rows(csv_path)[0]
    assert (row["recipe_version"], row["recipe_file_version"]) == ("1", "2")
    text = md.read_text().replace("\\_", "_")
    assert "| 1 (now 2) |" in text and "the records are version 1, the recipe file is version 2" in text


def test_resources_column_with_published_class(record_fields, records_dir, recipes, tmp_path):
    reference = tmp_path / "reference.csv"
    reference.write_text(NEW_REFERENCE + "dfn,small,,,,,0.5,private,paper\nbase,small,,,,,0.3,public,paper\n")
    (recipes / "dfn.yaml").write_text("version: 1\nname: dfn\nsampler: {name: all}\n"
                                      "resources: {class: public, uses: [a public stand-in]}\n")
    for recipe in ("dfn", "base", "oracle", "unknown_recipe"):
        _write(record_fields, records_dir, recipe, {0: 0.3})
    md, csv_path, html = build_leaderboard(records_dir, tmp_path / "o", reference_csv=reference)
    rows = {r["recipe"]: (r["resources"], r["published_resources"]) for r in _rows(csv_path)}
    assert rows == {"dfn": ("public", "private"), "base": ("public", "public"), "oracle": ("oracle", ""),
                    "unknown_recipe": ("undeclared", "")}
    assert "| public (pub.: private) |" in md.read_text()
    assert 'title="uses: a public stand-in"' in html.read_text()


def test_bad_published_resource_class_is_reported(fake_record, records_dir, tmp_path):
    from filterbench.leaderboard.aggregate import LeaderboardError

    write_record(fake_record(), records_dir)
    reference = tmp_path / "reference.csv"
    reference.write_text(NEW_REFERENCE + "x,small,,,,,0.1,secret,paper\n")
    with pytest.raises(LeaderboardError, match=r"reference.csv:2: resources 'secret' is not one of"):
        build_leaderboard(records_dir, tmp_path / "o", reference_csv=reference)


def _nano_metrics(level: float, chance_task: float) -> dict[str, float]:
    """Every nano task at ``level`` except nano/texture (chance 0.25), which sits at ``chance_task``."""
    from filterbench.leaderboard.declarations import tasklist_tasks

    tasks = tasklist_tasks(NANO_TASKLIST["sha256"])
    return {k: (chance_task if k == "nano/texture" else level) for k in tasks}


def test_tasks_no_recipe_lifts_off_chance_are_flagged(fake_record, records_dir, recipes,
                                                      no_reference, tmp_path):
    for recipe, level in (("base", 0.6), ("clip_score_l14_top30", 0.7)):
        for seed in range(3):
            write_record(fake_record(recipe=recipe, seed=seed, scale="nano", tasklist=NANO_TASKLIST,
                                     metrics=_nano_metrics(level, 0.25 + 0.01 * seed),
                                     groups={"Average": level + 0.01 * seed}), records_dir)
    views, _ = board_views(records_dir, reference_csv=no_reference)
    flags = {t.key: t.at_chance for t in views[0].analysis.tasks}
    # texture's mean 0.26 is within 3 standard errors (sqrt(.25 * .75 / 3000) = 0.0079) of chance 0.25
    assert flags["nano/texture"] is True and flags["nano/objects"] is False
    assert flags["nano/retrieval"] is None  # the task list gives no chance level for retrieval
    md, _, html = build_leaderboard(records_dir, tmp_path / "o", reference_csv=no_reference)
    assert "Average): nano/texture." in md.read_text()
    assert "Nano Texture (at chance)" in html.read_text() and 'id="tasks-0"' in html.read_text()


def test_nano_rank_agreement_with_published_numbers(record_fields, records_dir, recipes, tmp_path):
    nano = {"a": (0.30, 0.31, 0.29), "b": (0.40, 0.41, 0.39), "c": (0.42, 0.40, 0.41),
            "d": (0.50, 0.52, 0.51)}
    medium = {"a": 0.25, "b": 0.31, "c": 0.30, "d": 0.33}
    for recipe, values in nano.items():
        _write(record_fields, records_dir, recipe, dict(enumerate(values)), scale="nano")
    reference = tmp_path / "reference.csv"
    rows = "".join(f"{r},medium,,,,,{v},public,paper\n" for r, v in medium.items())
    reference.write_text(NEW_REFERENCE + rows)
    views, _ = board_views(records_dir, reference_csv=reference)
    (prediction,) = views[0].analysis.predictions
    agreement = prediction.agreement
    assert agreement.discordant == (("b", "c"),) and len(agreement.concordant) == 5
    assert agreement.tau == pytest.approx(4 / 6)
    # b - c on nano: +0.02, -0.01, ... per seed -> its interval includes 0, so that pair is open
    assert not prediction.differences[("b", "c")].excludes_zero
    assert (prediction.tau_low, prediction.tau_high) == (pytest.approx(4 / 6), pytest.approx(1.0))
    md = build_leaderboard(records_dir, tmp_path / "o", reference_csv=reference)[0].read_text()
    assert "**Does nano predict real scale?** " in md and "tau-b over 4 recipes = 0.667" in md


def test_compare_command(record_fields, records_dir, recipes):
    from filterbench.harness.cli import cli

    _write(record_fields, records_dir, "clip_score_l14_top30", {0: 0.40, 1: 0.38, 2: 0.39})
    _write(record_fields, records_dir, "base", {0: 0.35, 1: 0.34, 2: 0.345})
    result = CliRunner().invoke(cli, ["leaderboard", "compare", "base", "clip_score_l14_top30", "--records",
                                      str(records_dir)])
    assert result.exit_code == 0, result.output
    d = paired_difference({0: 0.35, 1: 0.34, 2: 0.345}, {0: 0.40, 1: 0.38, 2: 0.39})
    average = next(line for line in result.output.splitlines() if line.strip().startswith("Average"))
    assert f"{d.mean:+.3f}" in average and f"[{d.low:+.3f}, {d.high:+.3f}]" in average
    assert "B higher" in average and "paired over seeds 0 1 2" in result.output
    assert "seed 2: Average 0.345 − 0.390 = -0.045" in result.output
    missing = CliRunner().invoke(cli, ["leaderboard", "compare", "base", "nope", "--records",
                                       str(records_dir)])
    assert missing.exit_code == 2 and "no section has runs of both" in missing.output


def test_resolving_power_line(record_fields, records_dir, recipes, no_reference):
    _write(record_fields, records_dir, "clip_score_l14_top30", {0: 0.40, 1: 0.38, 2: 0.39})
    _write(record_fields, records_dir, "base", {0: 0.35, 1: 0.34, 2: 0.345})
    views, _ = board_views(records_dir, reference_csv=no_reference)
    r = views[0].analysis.resolving
    diffs = [0.35 - 0.40, 0.34 - 0.38, 0.345 - 0.39]
    mean = sum(diffs) / 3
    # with two recipes the residual variance is half the variance of their same-seed difference
    assert r.noise.sigma_d == pytest.approx(math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2), rel=1e-12)
    assert r.flagged == pytest.approx(views[0].analysis.versus["base"].half_width, rel=1e-12)
