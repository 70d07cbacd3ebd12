"""The whole chain through `filterbench run` on a fabricated pool: score -> sample -> train (open_clip_train)
-> eval (clip-benchmark) -> record -> leaderboard, and a rerun that reuses every stage."""

import json
from pathlib import Path
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli
from filterbench.testing import one_task_tasklist

TASKLIST = one_task_tasklist("e2e")


@pytest.fixture(scope="module")
def evalsets(tmp_path_factory):
    from filterbench.harness.evaluation.api import folder_name, write_classification_evalset

    root = tmp_path_factory.mktemp("evalsets")
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    images, labels = [], []
    for i in range(24):
        label = i % 2
        base = np.array(list(colours.values())[label], dtype=np.int16)
        images.append(np.clip(base + rng.integers(-20, 20, (32, 32, 3)), 0, 255).astype(np.uint8))
        labels.append(label)
    write_classification_evalset(root / folder_name("e2e/colours"), images, labels, list(colours),
                                 ["a photo of a {c} thing."], shard_size=12)
    (root / "e2e_v1.yaml").write_text(textwrap.dedent(TASKLIST))
    return root


def test_run_trains_evaluates_records_and_builds_the_board(tiny_pool, evalsets, workdir, tmp_path):
    records = tmp_path / "board" / "records"
    args = ["run", "no_filter", "clip_score_l14_top30", "--scale", "nano-xs", "--pool", str(tiny_pool),
            "--evalsets", str(evalsets), "--tasklist", str(evalsets / "e2e_v1.yaml"), "-o", "samples_seen=1280",
            "--records", str(records)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"leaderboard: {records.parent / 'leaderboard.html'}"
    written = sorted(records.rglob("*.json"))
    assert len(written) == 2
    from filterbench.leaderboard.records import load_records

    loaded = {r.recipe.name: r for r in load_records(records)}
    top30 = loaded["clip_score_l14_top30"]
    assert top30.official is False and top30.overrides == {"samples_seen": 1280}
    train = json.loads(next((workdir / "train").glob(f"*-{top30.keys.train}/manifest.json")).read_text())
    assert (train["official"], train["overrides"]) == (top30.official, top30.overrides)  # one source for both
    assert top30.selection.unique_uids == 181 and loaded["no_filter"].selection.unique_uids == 600
    assert set(top30.metrics) == {"e2e/colours"} and 0.0 <= top30.groups["Average"] <= 1.0
    table = [line.split() for line in result.output.splitlines() if line.split()[:1] in (["recipe"],
                                                                                          ["clip_score_l14_top30"])]
    header, row = table[0], table[-1]  # the closing table shows each run's headline scores
    assert "Average" in header and float(row[header.index("Average")]) == pytest.approx(top30.groups["Average"],
                                                                                        abs=5e-5)
    assert {"score:clip_score", "sample", "train", "eval"} <= set(top30.compute)
    assert [p.name for p in top30.plugins] == ["clip_score", "top_fraction"]
    eval_dir = next((workdir / "eval").iterdir())
    lines = (eval_dir / "eval_results.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["key"] == "e2e/colours"
    check = CliRunner().invoke(cli, ["leaderboard", "build", "--records", str(records), "--out",
                                     str(records.parent), "--check"], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0
    stages = [line for line in again.output.splitlines() if line.startswith("[")]
    assert stages and all(" reused " in line for line in stages), stages


def test_stage_commands_chain_by_printed_folders(tiny_pool, evalsets, workdir):
    """`score` -> `sample` -> `train` -> `eval` on the command line, each taking the folder the last one printed."""
    runner = CliRunner()

    def last_line(*args):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[-1]

    scores = last_line("score", "clip_score", "--pool", str(tiny_pool))
    selection = last_line("sample", "top_fraction", "--scores", scores, "-p", "fraction=0.5")
    train = last_line("train", selection, "--scale", "nano-xs", "--set", "samples_seen=640")
    assert (workdir / "train").exists() and train.startswith(str(workdir / "train"))
    evaluated = last_line("eval", train.rsplit("-", 1)[-1], "--evalsets", str(evalsets), "--tasklist",
                          str(evalsets / "e2e_v1.yaml"))
    summary = json.loads((Path(evaluated) / "summary.json").read_text())
    assert summary["missing_tasks"] == [] and set(summary["tasks"]) == {"e2e/colours"}
    summarized = runner.invoke(cli, ["eval", "summarize", str(Path(evaluated) / "eval_results.jsonl"),
                                     "--tasklist", str(evalsets / "e2e_v1.yaml")], catch_exceptions=False)
    assert json.loads(summarized.output)["scores"] == summary["scores"]
