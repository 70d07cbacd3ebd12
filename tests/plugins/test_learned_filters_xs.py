"""The papers' claims on the nano-xs world, with short fits: DFN ranks parrot signs lower than the L/14
reference CLIP score does; HYPE's text specificity ranks under-specified captions below clean ones.

ROC-AUC of clean rows against one noise type, from the world's oracle (analysis only; plugins never see it):
0.5 means no separation, below 0.5 the noise scores higher than clean rows.  The xs world's L/14 score gives the
parrot signs 0.41 (docs/nano.md section 8).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting one half."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    return float((ranks[:len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def _by_noise(world, artifact, column: str) -> tuple[np.ndarray, np.ndarray]:
    values, noise = [], []
    for stem in artifact.manifest["parts"]:
        values.append(pq.read_table(artifact.path / "parts" / f"{stem}.parquet").column(column).to_numpy())
        noise.append(pq.read_table(world.oracle_dir / f"{stem}.parquet", columns=["noise_type"])
                     .column("noise_type").to_numpy(zero_copy_only=False))
    return np.concatenate(values), np.concatenate(noise)


def _auc(values: np.ndarray, noise: np.ndarray, kind: str) -> float:
    return roc_auc(values[noise == "clean"], values[noise == kind])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("xs_filters"))


def test_dfn_ranks_parrot_signs_lower_than_the_l14_reference(xs_world, store):
    from filterbench.plugins.clip_score import ClipScoreScorer
    from filterbench.plugins.dfn import DfnScorer

    pool = xs_world.pool()
    dfn = run_score(store, pool, DfnScorer(steps=120, batch_size=512), progress=False)
    l14 = run_score(store, pool, ClipScoreScorer(model="l14", source="metadata"), progress=False)
    reference = _auc(*_by_noise(xs_world, l14, "score"), "parrot")
    ours = _auc(*_by_noise(xs_world, dfn, "score"), "parrot")
    assert reference < 0.45  # the reading teacher ranks signs above clean photos
    assert ours > reference + 0.04, (ours, reference)
    values, noise = _by_noise(xs_world, dfn, "score")
    assert _auc(values, noise, "misaligned") > 0.7  # and it still filters what CLIP score filters


def test_hype_text_specificity_ranks_underspecified_captions_below_clean_ones(xs_world, store):
    from filterbench.plugins.hype.scorer import HypeScorer

    hype = run_score(store, xs_world.pool(), HypeScorer(steps=100, references=500, batch_size=512), progress=False)
    values, noise = _by_noise(xs_world, hype, "eps_t")
    assert _auc(values, noise, "underspecified") > 0.7
    stats = hype.manifest["fit_stats"]
    assert 0.1 <= stats["curvature"] <= 10 and stats["hq_val_loss"] < stats["hq_val_before_loss"]
