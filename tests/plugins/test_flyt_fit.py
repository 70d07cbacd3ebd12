"""FLYT and M-FLYT fits on a fabricated pool with a tiny reference model: determinism, scores from the fitted
model, kill and resume, two gloo ranks against one, M-FLYT's standardised mixture, released checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from filterbench import get_scorer
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store

TINY = {"reference_model": "filterbench-micro-vit", "steps": 6, "up_batch": 32, "down_batch": 24, "warmup": 2,
        "checkpoint_every": 2, "lr_reference": 1e-3, "lr_scoring": 1e-2, "features": "b32"}


@pytest.fixture(scope="module")
def downstream(tmp_path_factory) -> Path:
    from filterbench.testing import fabricate_labelled_set

    return fabricate_labelled_set(tmp_path_factory.mktemp("downstream") / "set", rows=60)


def _scores(artifact) -> np.ndarray:
    return np.concatenate([pq.read_table(artifact.path / f"parts/{stem}.parquet").column("score").to_numpy()
                           for stem in artifact.manifest["parts"]])


def _fit(store, pool, downstream, **params):
    return run_score(store, Pool(pool), get_scorer("flyt", **{**TINY, "downstream": str(downstream), **params}),
                     progress=False)


def test_fit_is_deterministic_and_scores_come_from_the_fitted_head(tiny_pool, downstream, tmp_path):
    first = _fit(Store(tmp_path / "a"), tiny_pool, downstream)
    second = _fit(Store(tmp_path / "b"), tiny_pool, downstream)
    assert (first.path / "fit/scorer.pt").read_bytes() == (second.path / "fit/scorer.pt").read_bytes()
    assert np.array_equal(_scores(first), _scores(second))
    from filterbench.plugins.flyt.heads import GluHead

    head = GluHead(16)
    head.load_state_dict(torch.load(first.path / "fit/scorer.pt", weights_only=True))
    pool = Pool(tiny_pool)
    features = np.concatenate([np.concatenate([f["b32_img"], f["b32_txt"]], axis=1) for f in
                               (pool.read_features(s, ("b32_img", "b32_txt")) for s in pool.shards)])
    with torch.no_grad():
        expected = head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(_scores(first), expected, rtol=1e-6, atol=1e-6)
    stats = first.manifest["fit_stats"]
    assert stats["steps"] == 6 and stats["cpu_s_per_step"] > 0
    assert np.std(_scores(first)) > 0  # the head moved away from a constant


def test_a_different_seed_or_step_count_gives_another_fit(tiny_pool, downstream, tmp_path):
    base = _fit(Store(tmp_path / "a"), tiny_pool, downstream)
    longer = _fit(Store(tmp_path / "b"), tiny_pool, downstream, steps=7)
    assert not np.array_equal(_scores(base), _scores(longer))


def _cli(workdir: Path, pool: Path, downstream: Path, steps: int, **extra) -> list[str]:
    params = {**TINY, "downstream": str(downstream), "steps": steps, "checkpoint_every": 3, "up_batch": 64, **extra}
    command = [str(Path(sys.executable).parent / "filterbench"), "score", "flyt", "--pool", str(pool)]
    for key, value in params.items():
        command += ["-p", f"{key}={value}"]
    return command


def test_a_killed_fit_resumes_and_finishes_with_identical_bytes(tiny_pool, downstream, tmp_path):
    env = {**os.environ, "FILTERBENCH_HOME": str(tmp_path / "killed"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_cli(tmp_path, tiny_pool, downstream, 40), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "fits"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and \
            not list(checkpoints.glob(".partial-flyt-*/checkpoints/step-*.pt")):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = sorted(checkpoints.glob(".partial-flyt-*/checkpoints/step-*.pt"))
    assert process.returncode == -signal.SIGKILL and kept, "the fit ended before a checkpoint could be killed"
    assert not list(checkpoints.glob("flyt-*"))  # no completed fit
    done = subprocess.run(_cli(tmp_path, tiny_pool, downstream, 40), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    env_clean = {**env, "FILTERBENCH_HOME": str(tmp_path / "clean")}
    clean = subprocess.run(_cli(tmp_path, tiny_pool, downstream, 40), env=env_clean, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]
    resumed_fit = next((tmp_path / "killed" / "fits").glob("flyt-*"))
    clean_fit = next((tmp_path / "clean" / "fits").glob("flyt-*"))
    for name in ("scorer.pt", "history.jsonl"):
        a, b = (resumed_fit / "state" / name).read_bytes(), (clean_fit / "state" / name).read_bytes()
        if name == "history.jsonl":  # identical but for the per-step CPU seconds
            a, b = (_without_cpu(x) for x in (a, b))
        assert a == b, name


def _without_cpu(raw: bytes) -> list:
    import json

    return [{k: v for k, v in json.loads(line).items() if k != "cpu_s"} for line in raw.decode().splitlines()]


def test_two_gloo_ranks_give_the_head_of_one_process_with_the_same_global_batch(tiny_pool, downstream, tmp_path):
    # fp64: the global-batch semantics are exact; fp32 agrees up to rounding, which Adam's first steps amplify
    # (its derivative in g is large where |g| is near eps), so there it is checked by the scores' correlation
    one = _fit(Store(tmp_path / "one"), tiny_pool, downstream, steps=4, precision="fp64")
    two = _fit(Store(tmp_path / "two"), tiny_pool, downstream, steps=4, precision="fp64", processes=2)
    assert two.manifest["fit"]["key"] != one.manifest["fit"]["key"]
    a = torch.load(one.path / "fit/scorer.pt", weights_only=True)
    b = torch.load(two.path / "fit/scorer.pt", weights_only=True)
    assert a["glu_model.layers.0.w1.weight"].dtype == torch.float64
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert gap < 1e-9, gap
    init = _fit(Store(tmp_path / "init"), tiny_pool, downstream, steps=1, precision="fp64")
    c = torch.load(init.path / "fit/scorer.pt", weights_only=True)
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 1e-3  # the fits did move
    one32 = _fit(Store(tmp_path / "one32"), tiny_pool, downstream, steps=4)
    two32 = _fit(Store(tmp_path / "two32"), tiny_pool, downstream, steps=4, processes=2)
    assert np.corrcoef(_scores(one32), _scores(two32))[0, 1] > 0.999


def _standardised(pool: Pool, columns: list[str]) -> np.ndarray:
    raw = np.stack([np.concatenate([pool.read_metadata(s, (c,))[c] for s in pool.shards]) for c in columns],
                   axis=1).astype(np.float64)
    return (raw - raw.mean(0)) / raw.std(0)


MIX = [{"scorer": "clip_score", "params": {"model": "b32", "source": "metadata"}},
       {"scorer": "clip_score", "params": {"model": "l14", "source": "metadata"}}]


def test_m_flyt_learns_a_mixture_of_standardised_columns(tiny_pool, downstream, tmp_path):
    params = {k: v for k, v in TINY.items() if k != "features"}
    artifact = run_score(Store(tmp_path), Pool(tiny_pool),
                         get_scorer("m_flyt", inputs=MIX, downstream=str(downstream), **params), progress=False)
    stats = artifact.manifest["fit_stats"]
    weights = [stats["weight:clip_score[0].score"], stats["weight:clip_score[1].score"]]
    state = torch.load(artifact.path / "fit/scorer.pt", weights_only=True)
    z = _standardised(Pool(tiny_pool), ["clip_b32_similarity_score", "clip_l14_similarity_score"])
    expected = z @ np.asarray(weights) + float(state["layers.0.bias"])
    np.testing.assert_allclose(_scores(artifact), expected, atol=1e-4)


def test_released_checkpoints_load_in_their_published_formats(tiny_pool, tmp_path):
    g = torch.Generator().manual_seed(0)
    head = {f"glu_model.layers.0.{n}.{kind}": torch.randn(*shape, generator=g)
            for n, shapes in {"w1": ((32, 32), (32,)), "w3": ((32, 32), (32,)), "w2": ((1, 32), (1,))}.items()
            for kind, shape in zip(("weight", "bias"), shapes)}
    base = {"clip_model.logit_scale": torch.tensor(4.6), "clip_model.visual.proj": torch.randn(8, 16)}
    torch.save({"epoch": 5, "name": "flyt", "state_dict": {**base, **head}, "optimizer": {}}, tmp_path / "flyt.pt")
    with pytest.warns(UserWarning, match="QuickGELU"):
        flyt = run_score(Store(tmp_path / "w1"), Pool(tiny_pool),
                         get_scorer("flyt", released=str(tmp_path / "flyt.pt")), progress=False)
    pool = Pool(tiny_pool)
    feats = [pool.read_features(s, ("b32_img", "b32_txt")) for s in pool.shards]
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    x = np.concatenate([np.concatenate([unit(f["b32_img"]), unit(f["b32_txt"])], 1) for f in feats]).astype(np.float64)
    w = {k.split("layers.0.")[1]: v.double().numpy() for k, v in head.items()}
    silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
    hidden = silu(x @ w["w1.weight"].T + w["w1.bias"]) * (x @ w["w3.weight"].T + w["w3.bias"])
    np.testing.assert_allclose(_scores(flyt), (hidden @ w["w2.weight"].T + w["w2.bias"])[:, 0], rtol=1e-4, atol=1e-4)
    assert flyt.manifest["fit_stats"] == {}
    torch.save({"layers.0.weight": torch.tensor([[0.25, -0.5]]), "layers.0.bias": torch.tensor([0.1])},
               tmp_path / "mflyt.pt")
    mixed = run_score(Store(tmp_path / "w2"), Pool(tiny_pool),
                      get_scorer("m_flyt", inputs=MIX, released=str(tmp_path / "mflyt.pt")), progress=False)
    z = _standardised(pool, ["clip_b32_similarity_score", "clip_l14_similarity_score"])
    np.testing.assert_allclose(_scores(mixed), z @ np.array([0.25, -0.5]) + 0.1, atol=1e-4)


def test_a_released_checkpoint_of_the_wrong_shape_fails_in_one_line(tiny_pool, tmp_path):
    from filterbench.harness.errors import PluginError

    torch.save({"layers.0.weight": torch.zeros(1, 3), "layers.0.bias": torch.zeros(1)}, tmp_path / "mflyt.pt")
    with pytest.raises(PluginError, match="do not fit 2 inputs"):
        run_score(Store(tmp_path / "w"), Pool(tiny_pool),
                  get_scorer("m_flyt", inputs=MIX, released=str(tmp_path / "mflyt.pt")), progress=False)


def _nan_plugin():
    import sys
    import types

    from filterbench.harness.contract import Needs, Scorer
    from filterbench.harness.hookspecs import hookimpl

    class ImageOrNan(Scorer):
        name = "image_or_nan"
        needs = Needs(metadata=("clip_b32_similarity_score",), images=True)

        def score_batch(self, batch, ctx):
            values = batch.metadata["clip_b32_similarity_score"].astype(np.float32)
            return np.where([image is None for image in batch.images], np.nan, -values)

    module = types.ModuleType("image_or_nan_plugin")
    module.register_scorers = hookimpl(lambda register: register(ImageOrNan))
    sys.modules[module.__name__] = module
    return module


def test_m_flyt_gives_rows_with_a_missing_input_the_missing_score(micro_world, tmp_path):
    from filterbench.harness.manager import Plugins
    from filterbench.plugins.flyt.scorers import MISSING_SCORE

    plugins = Plugins(extra=(("image_or_nan", _nan_plugin()),))
    inputs = [MIX[0], {"scorer": "image_or_nan"}]
    scorer = plugins.scorer_class("m_flyt")(inputs=inputs, steps=2, up_batch=16, down_batch=12, warmup=1,
                                            checkpoint_every=2)
    pool = Pool(micro_world / "pool")
    artifact = run_score(Store(tmp_path), pool, scorer, plugins=plugins, progress=False)
    from filterbench.harness.samples import PoolSamples

    missing = ~PoolSamples(pool).available
    scores = _scores(artifact)
    assert missing.any() and np.all(scores[missing] == np.float32(MISSING_SCORE))
    assert np.all(scores[~missing] > -1e3) and np.isfinite(artifact.manifest["fit_stats"]["weight:image_or_nan.score"])
