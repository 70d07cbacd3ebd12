"""The CLI end to end on a fabricated pool: DataComp's CLIP-score rule, one-line errors, no half artifacts."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from filterbench.harness.cli import cli
from filterbench.harness.uids import hex_to_pairs, read_subset


@pytest.fixture()
def run(workdir):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def _datacomp_l14_30(pool_dir):
    """DataComp's `get_threshold` + `load_uids_with_clip_score`, written out independently."""
    frames = [pq.read_table(p, columns=["uid", "clip_l14_similarity_score"]).to_pandas()
              for p in sorted((pool_dir / "metadata").glob("*.parquet"))]
    uids = np.concatenate([f["uid"].to_numpy() for f in frames])
    scores = np.concatenate([f["clip_l14_similarity_score"].to_numpy() for f in frames])
    n = int(len(scores) * 0.3)
    threshold = -np.sort(-scores)[n]
    return uids, scores, n, set(uids[scores >= threshold])


def test_score_then_top_fraction_matches_datacomp(tiny_pool, run):
    scored = run("score", "clip_score", "--pool", str(tiny_pool), "-p", "model=l14")
    assert scored.exit_code == 0, scored.output
    score_dir = scored.output.strip().splitlines()[-1]
    sampled = run("sample", "top_fraction", "--scores", score_dir, "-p", "fraction=0.3")
    assert sampled.exit_code == 0, sampled.output
    subset = read_subset(sampled.output.strip().splitlines()[-1] + "/subset.npy")
    uids, scores, n, datacomp = _datacomp_l14_30(tiny_pool)
    assert len(subset) == n == int(np.floor(0.3 * 600))
    ours = set(hex_to_pairs(sorted(datacomp)).tolist()) & set(subset.tolist())
    assert len(ours) == n  # every uid we keep is one DataComp keeps ...
    boundary = uids[np.argsort(-scores, kind="stable")[n]]
    assert datacomp - {u for u in uids if hex_to_pairs([u])[0] in subset} == {boundary}  # ... it keeps 1 more
    exact = run("sample", "top_fraction", "--scores", score_dir, "-p", "fraction=0.3", "-p", "rule=datacomp")
    datacomp_subset = read_subset(exact.output.strip().splitlines()[-1] + "/subset.npy")
    assert np.array_equal(datacomp_subset, np.sort(hex_to_pairs(sorted(datacomp))))


def test_bad_inputs_give_one_line_and_no_artifact(tiny_pool, run, workdir, tmp_path):
    import shutil

    broken = shutil.copytree(tiny_pool, tmp_path / "broken")
    npz = sorted((broken / "metadata").glob("*.npz"))[1]
    npz.write_bytes(npz.read_bytes()[:200])
    result = run("score", "clip_score", "--pool", str(broken))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and npz.name in lines[-1] and "truncated" in lines[-1]
    assert not list((workdir / "scores").glob("clip_score-*"))  # no completed artifact
    for args, culprit in [(("score", "clip_scor", "--pool", str(tiny_pool)), "did you mean 'clip_score'"),
                          (("score", "clip_score", "--pool", str(tiny_pool), "-p", "modle=l14"), "modle"),
                          (("sample", "top_fraction", "--scores", "zzzz", "-p", "fraction=0.3"), "'zzzz'")]:
        result = run(*args)
        assert result.exit_code == 2 and culprit in result.output.strip().splitlines()[-1], result.output


def test_show_ls_validate_and_help(tiny_pool, run):
    scored = run("score", "clip_score", "--pool", str(tiny_pool))
    key = scored.output.strip().splitlines()[-1].rsplit("-", 1)[-1]
    shown = run("show", key[:8], "--verify")
    assert shown.exit_code == 0 and '"stage": "score"' in shown.output
    assert "top_fraction" in run("ls", "samplers", "--params").output
    assert "xlarge" in run("ls", "scales").output and "nano-xs" in run("ls", "scales").output
    assert "clip_score_l14_top30" in run("ls", "recipes").output
    tasks = run("ls", "tasks").output.strip().splitlines()
    assert len(tasks) == 40 and tasks[0].split() == ["vtab/caltech101", "mean_per_class_recall"]
    valid = run("validate", "clip_score_l14_top30")
    assert valid.exit_code == 0 and '"mode": "subset"' in valid.output
    typo = run("validate", "clip_score_l14_top3")
    assert typo.exit_code == 2
    assert typo.output.startswith("error: no recipe 'clip_score_l14_top3'; did you mean 'clip_score_l14_top30'")
    assert run("--help").exit_code == 0


def test_samplers_without_scores_take_the_pool(tiny_pool, run):
    result = run("sample", "random_fraction", "--pool", str(tiny_pool), "-p", "fraction=0.5", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert len(read_subset(result.output.strip().splitlines()[-1] + "/subset.npy")) == 300


def test_run_reuses_stages_and_stops_where_asked(tiny_pool, run, workdir):
    first = run("run", "no_filter", "clip_score_l14_top30", "--scale", "small", "--pool", str(tiny_pool),
                "--until", "sample", "--seeds", "2")
    assert first.exit_code == 0, first.output
    lines = first.output.strip().splitlines()
    # DataComp's rule: the uids at or above the sorted score of index int(0.3 * 600), i.e. 181 of 600
    assert any(l.startswith("clip_score_l14_top30") and l.split()[2] == "181" for l in lines)
    selections = sorted(p.name for p in (workdir / "selections").iterdir())
    assert len(selections) == 4  # 2 recipes x 2 seeds
    again = run("run", "clip_score_l14_top30", "--scale", "small", "--pool", str(tiny_pool), "--until", "sample")
    assert "score  reused" in again.output and "sample reused" in again.output
    assert len(list((workdir / "selections").iterdir())) == 4
    assert run("run", "clip_score_l14_top30", "--scale", "small", "--until", "sample").exit_code == 2  # no --pool
