"""The fit stage: its own artifact, reused across score artifacts, resumable from checkpoints, sees consumed
scores (two inputs of one scorer told apart), and its compute reaches the run's scoring compute."""

from __future__ import annotations

import json

import numpy as np
import pytest

from filterbench.harness.contract import Needs, Params, ScoreInput, Scorer, input_prefixes
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score


class CountingFit(Scorer):
    """Fits the mean caption length in ``steps`` checkpointed steps; ``offset`` only changes scoring."""

    name = "counting_fit"
    needs = Needs(metadata=("text",))
    fits: list = []
    crash_after: int | None = None

    class Params(Params):
        steps: int = 4
        offset: float = 0.0

    def fit_identity(self):
        identity = self.identity()
        identity["params"].pop("offset")
        return identity

    def fit(self, pool, ctx):
        start = 0
        marker = ctx.checkpoint_dir / "step.json"
        if marker.exists():
            start = json.loads(marker.read_text())["step"]
        CountingFit.fits.append(start)
        for step in range(start, self.params.steps):
            if CountingFit.crash_after is not None and step == CountingFit.crash_after:
                raise KeyboardInterrupt("killed")
            marker.write_text(json.dumps({"step": step + 1}))
        lengths = np.concatenate([pool.read_metadata(s, ("text",))["text"] for s in pool.shards])
        np.save(ctx.state_dir / "mean.npy", np.array([np.mean([len(t) for t in lengths])]))
        ctx.stat("steps", self.params.steps)

    def score_batch(self, batch, ctx):
        mean = float(np.load(ctx.state_dir / "mean.npy")[0])
        return np.array([len(t) - mean + self.params.offset for t in batch.metadata["text"]], np.float32)


def _plugins():
    import sys

    return Plugins(load_entry_points=True, extra=(("counting_fit_test", sys.modules[__name__]),))


from filterbench.harness.hookspecs import hookimpl  # noqa: E402


@hookimpl
def register_scorers(register):
    register(CountingFit)
    register(TwoInputs)


def test_fit_is_its_own_artifact_and_rescoring_never_refits(tiny_pool, store):
    pool, plugins = Pool(tiny_pool), _plugins()
    CountingFit.fits, CountingFit.crash_after = [], None
    first = run_score(store, pool, CountingFit(), plugins=plugins, progress=False)
    fits = list((store.root / "fits").glob("counting_fit-*"))
    assert len(fits) == 1 and (fits[0] / "_COMPLETE").exists() and (fits[0] / "state/mean.npy").is_file()
    assert not (fits[0] / "checkpoints").exists()  # scratch is removed once the fit completes
    assert (first.path / "fit/mean.npy").read_bytes() == (fits[0] / "state/mean.npy").read_bytes()
    assert first.manifest["fit"]["key"] == json.loads((fits[0] / "manifest.json").read_text())["key"]
    assert first.manifest["fit_stats"] == {"steps": 4.0}
    shifted = run_score(store, pool, CountingFit(offset=1.5), plugins=plugins, progress=False)
    assert shifted.key != first.key and CountingFit.fits == [0]  # a new score artifact, the same fit
    assert shifted.manifest["fit"]["key"] == first.manifest["fit"]["key"]
    refit = run_score(store, pool, CountingFit(steps=5), plugins=plugins, progress=False)
    assert CountingFit.fits == [0, 0] and refit.manifest["fit"]["key"] != first.manifest["fit"]["key"]


def test_a_killed_fit_resumes_from_its_checkpoints(tiny_pool, store, tmp_path):
    from filterbench.harness.store import Store

    pool, plugins = Pool(tiny_pool), _plugins()
    CountingFit.fits, CountingFit.crash_after = [], 2
    with pytest.raises(KeyboardInterrupt):
        run_score(store, pool, CountingFit(), plugins=plugins, progress=False)
    assert not list((store.root / "fits").glob("counting_fit-*"))  # nothing looks complete
    CountingFit.crash_after = None
    resumed = run_score(store, pool, CountingFit(), plugins=plugins, progress=False)
    assert CountingFit.fits == [0, 2]  # the rerun started where the killed fit had checkpointed
    clean = run_score(Store(tmp_path / "clean"), pool, CountingFit(), plugins=plugins, progress=False)
    assert (resumed.path / "fit/mean.npy").read_bytes() == (clean.path / "fit/mean.npy").read_bytes()


class TwoInputs(Scorer):
    """Consumes CLIP score of two models: the columns arrive as clip_score[0].score and clip_score[1].score."""

    name = "two_inputs"
    seen: dict = {}

    def required_scores(self):
        return (ScoreInput("clip_score", {"model": "b32"}), ScoreInput("clip_score", {"model": "l14"}))

    def fit(self, pool, ctx):
        TwoInputs.seen = {name: ctx.scores.column(name) for name in ctx.scores.names}
        np.save(ctx.state_dir / "n.npy", np.array([len(ctx.scores.names)]))

    def score_batch(self, batch, ctx):
        return batch.scores["clip_score[0].score"] - batch.scores["clip_score[1].score"]


def test_fit_sees_consumed_columns_and_two_inputs_of_one_scorer_stay_apart(tiny_pool, store):
    import pyarrow.parquet as pq

    pool, plugins = Pool(tiny_pool), _plugins()
    assert input_prefixes(["a", "b", "a"]) == ["a[0]", "b", "a[1]"]
    artifact = run_score(store, pool, TwoInputs(), plugins=plugins, progress=False)
    assert sorted(TwoInputs.seen) == ["clip_score[0].score", "clip_score[1].score"]
    b32 = np.concatenate([pool.read_metadata(s, ("clip_b32_similarity_score",))["clip_b32_similarity_score"]
                          for s in pool.shards])
    np.testing.assert_allclose(TwoInputs.seen["clip_score[0].score"], b32, atol=2e-3)
    l14 = TwoInputs.seen["clip_score[1].score"]
    assert not np.allclose(l14, TwoInputs.seen["clip_score[0].score"])
    scores = np.concatenate([pq.read_table(artifact.path / f"parts/{s.stem}.parquet").column("score").to_numpy()
                             for s in pool.shards])
    np.testing.assert_allclose(scores, TwoInputs.seen["clip_score[0].score"] - l14, atol=1e-6)


def test_a_runs_record_counts_the_fit_in_its_scoring_compute(tiny_pool, store):
    from types import SimpleNamespace

    from filterbench.harness.recording import _fit_cost
    from filterbench.leaderboard.aggregate import _scoring

    pool, plugins = Pool(tiny_pool), _plugins()
    CountingFit.fits, CountingFit.crash_after = [], None
    artifact = run_score(store, pool, CountingFit(), plugins=plugins, progress=False)
    fit_cost = _fit_cost(artifact.manifest["fit"])
    assert fit_cost["cpu_s"] == artifact.manifest["fit"]["cost"]["cpu_s"]
    stage = SimpleNamespace
    record = SimpleNamespace(compute={"score:counting_fit": stage(cpu_s=1.0),
                                      f"score:counting_fit:fit@{artifact.manifest['fit']['key'][:12]}":
                                          stage(cpu_s=2.5), "train": stage(cpu_s=100.0)})
    assert _scoring(record, "cpu_s") == 3.5
