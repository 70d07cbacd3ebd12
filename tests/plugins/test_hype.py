"""``hype`` (a MERU-style hyperbolic CLIP's specificities and -d_L) and ``hype_composite``."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from filterbench import get_sampler
from filterbench.harness.errors import PluginError
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.plugins.hype import lorentz
from filterbench.plugins.hype.model import HYPERBOLIC_KEYS
from filterbench.plugins.hype.scorer import HypeCompositeScorer, HypeScorer

FAST = {"steps": 10, "train_batch": 16, "warmup": 2, "references": 40, "batch_size": 32}


def _columns(artifact) -> dict[str, np.ndarray]:
    tables = [pq.read_table(artifact.path / "parts" / f"{s}.parquet") for s in artifact.manifest["parts"]]
    return {c: np.concatenate([t.column(c).to_numpy() for t in tables]) for c in tables[0].column_names}


@pytest.fixture(scope="module")
def fitted(micro_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("hype")
    return [run_score(Store(root / name), Pool(micro_world / "pool"), HypeScorer(**FAST), progress=False)
            for name in ("a", "b")]


def test_fit_writes_the_released_layout_and_records_curvature_and_entailment(fitted):
    a, b = fitted
    state = torch.load(a.path / "fit" / "ckpt.pt", weights_only=True)
    assert set(HYPERBOLIC_KEYS) <= set(state) and "visual.conv1.weight" in state and "logit_scale" in state
    refs = torch.load(a.path / "fit" / "reference.pt", weights_only=True)
    assert refs["img"].shape == refs["txt"].shape == (40, 32)  # micro model: 32-d embeddings
    stats = a.manifest["fit_stats"]
    assert 0.1 <= stats["curvature"] <= 10
    assert stats["curvature"] == pytest.approx(math.exp(float(state["curvature"])))
    assert {"hq_last_entailment", "hq_last_contrastive", "hq_val_entailment", "logit_scale"} <= set(stats)
    other = torch.load(b.path / "fit" / "ckpt.pt", weights_only=True)
    assert all(torch.equal(state[k], other[k]) for k in state)  # deterministic for a seed
    columns = _columns(a)
    missing = np.isnan(columns["eps_i"])
    assert missing.any() and (np.isnan(columns["eps_t"]) == missing).all()
    assert np.isfinite(columns["neg_dist"][~missing]).all()
    assert (columns["neg_dist"][~missing] < 0).all()


def _released(micro_world, tmp_path, curvature=0.5, alpha=0.3):
    """A checkpoint in HYPE's released layout (a flat state dict plus the three log-scalars) and its
    reference set (``{"img", "txt"}`` tangent vectors), as naver-ai/hype distributes ckpt.pt / reference.pt."""
    state = torch.load(micro_world / "models" / "micro.pt", weights_only=True)["state_dict"]
    state = {**state, "curvature": torch.tensor(math.log(curvature)), "alpha_img": torch.tensor(math.log(alpha)),
             "alpha_txt": torch.tensor(math.log(alpha))}
    torch.save(state, tmp_path / "ckpt.pt")
    g = torch.Generator().manual_seed(3)
    refs = {"img": torch.randn(25, 32, generator=g) * 0.5, "txt": torch.randn(30, 32, generator=g) * 0.5}
    torch.save(refs, tmp_path / "reference.pt")
    return state, refs


def test_released_weights_and_references_score_as_the_formulas_say(micro_world, tmp_path):
    from PIL import Image

    from filterbench.harness.assets import ModelRef, load_model

    state, refs = _released(micro_world, tmp_path)
    scorer = HypeScorer(model="filterbench-micro-vit", init=str(tmp_path / "ckpt.pt"), steps=0,
                        reference_file=str(tmp_path / "reference.pt"))
    artifact = run_score(Store(tmp_path / "s"), Pool(micro_world / "pool"), scorer, progress=False)
    got = _columns(artifact)
    pool = Pool(micro_world / "pool")
    samples = pool.samples()
    rows = np.flatnonzero(samples.available)[:12]
    data, _ = samples.read(rows)
    texts = np.concatenate([pool.read_metadata(s, ("text",))["text"] for s in pool.shards])[rows]
    micro = ModelRef("filterbench-micro-vit", micro_world / "models/micro.pt", "test")
    clip, _, preprocess, tokenizer = load_model(micro)
    with torch.no_grad():
        import io

        pixels = torch.stack([preprocess(Image.open(io.BytesIO(d)).convert("RGB")) for d in data])
        v = 0.3 * clip.eval().encode_image(pixels)
        t = 0.3 * clip.encode_text(tokenizer(list(texts)))
    c = 0.5
    expected_i = (lorentz.pairwise_exterior_angle(refs["txt"], v, c)
                  - lorentz.half_aperture(lorentz.expmap0(refs["txt"], c), c)[:, None]).mean(0)
    expected_t = (lorentz.pairwise_exterior_angle(t, refs["img"], c)
                  - lorentz.half_aperture(lorentz.expmap0(t, c), c)[:, None]).mean(1)
    np.testing.assert_allclose(got["eps_i"][rows], expected_i.numpy(), atol=2e-5)
    np.testing.assert_allclose(got["eps_t"][rows], expected_t.numpy(), atol=2e-5)
    np.testing.assert_allclose(got["neg_dist"][rows], -lorentz.distance(v, t, c).numpy(), atol=2e-5)
    assert artifact.manifest["fit_stats"]["curvature"] == pytest.approx(0.5)


def test_checkpoint_mismatches_are_errors_not_random_weights(micro_world, tmp_path):
    state, _ = _released(micro_world, tmp_path)
    cases = {"missing": {k: v for k, v in state.items() if k != "visual.proj"},
             "unexpected": {**state, "visual.extra_head.weight": torch.zeros(2)},
             "plain": {k: v for k, v in state.items() if k not in HYPERBOLIC_KEYS},
             "partial": {k: v for k, v in state.items() if k != "alpha_txt"}}
    messages = {"missing": r"missing \['visual.proj'\]", "unexpected": r"unexpected \['visual.extra_head.weight'\]",
                "plain": "a plain CLIP, not a hyperbolic checkpoint", "partial": "not all of"}
    for case, broken in cases.items():
        torch.save(broken, tmp_path / f"{case}.pt")
        scorer = HypeScorer(model="filterbench-micro-vit", init=str(tmp_path / f"{case}.pt"), steps=0)
        with pytest.raises(PluginError, match=messages[case]):
            run_score(Store(tmp_path / case), Pool(micro_world / "pool"), scorer, progress=False)
    torch.save({"img": torch.zeros(3, 32)}, tmp_path / "refs.pt")
    scorer = HypeScorer(model="filterbench-micro-vit", init=str(tmp_path / "ckpt.pt"), steps=0,
                        reference_file=str(tmp_path / "refs.pt"))
    with pytest.raises(PluginError, match="refs.pt: a reference set needs keys 'img' and 'txt'"):
        run_score(Store(tmp_path / "refs"), Pool(micro_world / "pool"), scorer, progress=False)


def test_composite_is_the_weighted_sum_of_pool_standardised_terms(micro_world, tmp_path):
    weights = {"eps_i": 0.5, "eps_t": 1.0, "neg_dist": 2.0, "clip": 1.0, "in_cluster": 0.0}
    store = Store(tmp_path / "s")
    composite = run_score(store, Pool(micro_world / "pool"), HypeCompositeScorer(hype=FAST, weights=weights),
                          progress=False)
    hype = _columns(run_score(store, Pool(micro_world / "pool"), HypeScorer(**FAST), progress=False))
    from filterbench.plugins.clip_score import ClipScoreScorer

    clip = _columns(run_score(store, Pool(micro_world / "pool"), ClipScoreScorer(model="l14"), progress=False))
    terms = {"eps_i": hype["eps_i"], "eps_t": hype["eps_t"], "neg_dist": hype["neg_dist"], "clip": clip["score"]}
    expected = sum(weights[k] * (v - np.nanmean(v.astype(np.float64))) / np.nanstd(v.astype(np.float64))
                   for k, v in terms.items())
    got = _columns(composite)["score"]
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    assert np.isnan(got).sum() == np.isnan(hype["eps_i"]).sum() > 0  # no image: no composite either
    assert composite.manifest["fit_stats"]["hype.eps_t.std"] > 0
    counts = get_sampler("top_fraction", fraction=0.15)(got, len(got))
    assert counts.sum() == int(0.15 * len(got)) and not np.isnan(got[counts == 1]).any()
