"""negCLIPLoss: known answers recomputed in float64, worker-count invariance, seed dependence, stability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from filterbench.harness.contract import PoolBatch, StageContext
from filterbench.harness.errors import ParamsError
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.seeding import derive_rng
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.testing import check_scorer, fabricate_pool
from filterbench.plugins.negcliploss import NegClipLossScorer, batch_normalisers, batch_slices


def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=(("negcliploss", "filterbench.plugins.negcliploss"),))


def lse(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def reference(image: np.ndarray, text: np.ndarray, perms: list[np.ndarray], b: int, tau: float) -> dict:
    """scorers.md 2.1 in float64: per permutation, consecutive chunks of b rows; average the two terms."""
    f = image / np.linalg.norm(image, axis=1, keepdims=True)
    g = text / np.linalg.norm(text, axis=1, keepdims=True)
    r1, r2 = np.zeros(len(f)), np.zeros(len(f))
    for perm in perms:
        for start in range(0, len(perm), b):
            rows = perm[start:start + b]
            s = f[rows] @ g[rows].T / tau
            r1[rows] += tau / 2 * lse(s, 1)
            r2[rows] += tau / 2 * lse(s, 0)
    r1, r2 = r1 / len(perms), r2 / len(perms)
    return {"score": (f * g).sum(1) - r1 - r2, "norm_img": r1, "norm_txt": r2}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return fabricate_pool(tmp_path_factory.mktemp("ncl") / "pool", rows=90, shards=2, images=False,
                          feature_sets={"l14": 12})


def test_two_by_two_batch_by_hand():
    """One batch of two pairs: score_i = S_ii - tau/2 (log sum_j e^{S_ij/tau} + log sum_j e^{S_ji/tau})."""
    image = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    text = np.array([[0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    tau = 0.5
    s = image @ text.T  # [[0.8, 0.0], [0.84, 0.8]]
    row = tau / 2 * np.log(np.exp(s / tau).sum(1))
    col = tau / 2 * np.log(np.exp(s / tau).sum(0))
    scorer = NegClipLossScorer(model="x", batch_size=2, num_batches=1, temperature=tau)
    batch = PoolBatch("s", np.array(["a" * 32, "b" * 32]), features={"x_img": image, "x_txt": text})
    out = scorer.score_batch(batch, StageContext(rng=np.random.default_rng(0)))
    np.testing.assert_allclose(out["norm_img"], row, rtol=1e-6)
    np.testing.assert_allclose(out["norm_txt"], col, rtol=1e-6)
    np.testing.assert_allclose(out["score"], np.diag(s) - row - col, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch_size,num_batches,tau", [(16, 3, 0.01), (7, 2, 0.07), (64, 1, 0.01)])
def test_known_answers_through_the_score_stage(pool, tmp_path, batch_size, num_batches, tau):
    scorer = NegClipLossScorer(batch_size=batch_size, num_batches=num_batches, temperature=tau)
    artifact = run_score(Store(tmp_path), Pool(pool), scorer, seed=3, workers=1, plugins=plugins(),
                         progress=False)
    p = Pool(pool)
    for shard in p.shards:
        feats = p.read_features(shard, ("l14_img", "l14_txt"))
        rng = derive_rng(3, "score", "negcliploss", shard.stem)  # the harness-seeded stream of this shard
        perms = [rng.permutation(shard.rows) for _ in range(num_batches)]
        want = reference(feats["l14_img"].astype(np.float64), feats["l14_txt"].astype(np.float64), perms,
                         batch_size, tau)
        got = pq.read_table(artifact.path / f"parts/{shard.stem}.parquet").to_pydict()
        for column in ("score", "norm_img", "norm_txt"):
            np.testing.assert_allclose(got[column], want[column], rtol=2e-5, atol=2e-6, err_msg=column)


def test_conformance_worker_invariance_and_seed_dependence(pool, tmp_path):
    """check_scorer: byte-identical parts with 1 and 2 workers, a different output under another seed."""
    check_scorer(NegClipLossScorer(batch_size=8, num_batches=2), tmp_path, pool=pool, plugins=plugins())


def test_changes_with_the_seed_and_only_with_it(pool, tmp_path):
    def run(seed, workers, name):
        scorer = NegClipLossScorer(batch_size=8, num_batches=2)
        art = run_score(Store(tmp_path / name), Pool(pool), scorer, seed=seed, workers=workers,
                        plugins=plugins(), progress=False)
        part = art.path / f"parts/{art.manifest['parts'][1]}.parquet"
        return pq.read_table(part).column("score").to_numpy()

    base = run(0, 1, "a")
    assert np.array_equal(base, run(0, 2, "b"))
    assert not np.array_equal(base, run(1, 1, "c"))


def test_batch_params_enter_the_key(pool, tmp_path):
    store = Store(tmp_path)
    keys = {run_score(store, Pool(pool), NegClipLossScorer(**params), plugins=plugins(), progress=False).key
            for params in ({"batch_size": 8}, {"batch_size": 9}, {"batch_size": 8, "num_batches": 2},
                           {"batch_size": 8, "temperature": 0.02})}
    assert len(keys) == 4


def test_logsumexp_is_stable_where_raw_exponentials_overflow():
    """Cosines near 1 at tau=0.001: exp(1000) overflows, logsumexp does not."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((1, 8))
    image = base + 1e-3 * rng.standard_normal((6, 8))
    text = base + 1e-3 * rng.standard_normal((6, 8))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rows, cols = batch_normalisers(torch.from_numpy(image), torch.from_numpy(text), 0.001)
    s = image @ text.T / 0.001
    np.testing.assert_allclose(rows.numpy(), 0.0005 * lse(s, 1), rtol=1e-9)
    np.testing.assert_allclose(cols.numpy(), 0.0005 * lse(s, 0), rtol=1e-9)
    assert np.isfinite(rows.numpy()).all() and (s > 88.7).any()


def test_row_blocks_match_one_block(monkeypatch):
    from filterbench.plugins import negcliploss

    rng = np.random.default_rng(1)
    image, text = (torch.from_numpy(rng.standard_normal((50, 6)).astype(np.float32)) for _ in range(2))
    whole = batch_normalisers(image, text, 0.05)
    monkeypatch.setattr(negcliploss, "BLOCK_ROWS", 7)
    blocked = batch_normalisers(image, text, 0.05)
    for a, b in zip(whole, blocked):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)


def test_batch_slices_short_and_merged_remainder():
    order = np.arange(10)
    assert [len(b) for b in batch_slices(order, 4, "short")] == [4, 4, 2]
    assert [len(b) for b in batch_slices(order, 4, "merge")] == [4, 6]
    assert [len(b) for b in batch_slices(order, 5, "merge")] == [5, 5]
    assert [len(b) for b in batch_slices(order[:3], 4, "merge")] == [3]
    assert np.array_equal(np.concatenate(batch_slices(order, 3, "merge")), order)


def test_params_are_validated():
    with pytest.raises(ParamsError):
        NegClipLossScorer(batch_size=1)
    with pytest.raises(ParamsError):
        NegClipLossScorer(temperature=0)
    with pytest.raises(ParamsError):
        NegClipLossScorer(unknown=1)
    assert NegClipLossScorer(model="b32").needs.features == ("b32_img", "b32_txt")
