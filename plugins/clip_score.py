"""Scorer ``clip_score``: cosine similarity of a pool's stored CLIP image and text features.

Card
    Paper: Radford et al. 2021 (CLIP); used as a filter by LAION-400M and by DataComp (Gadre et al. 2023).
    Reference: mlfoundations/datacomp ``baselines/apply_filter.py`` (``load_uids_with_clip_score``) reads the
        parquet column ``clip_<model>_similarity_score``, the dot product of L2-normalised OpenAI CLIP features.
    Params: ``model`` (feature set prefix: ``l14``, ``b32`` or any ``<prefix>_img``/``<prefix>_txt`` pair in the
        npz), ``source`` (``features``: recompute from the npz; ``metadata``: read DataComp's parquet column,
        which reproduces DataComp's selections exactly).
    Checks: equals DataComp's parquet column within fp16 tolerance (tests/plugins/test_clip_score.py).
    Versions: 1 - first release.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, StageContext
from filterbench.harness.hookspecs import hookimpl


class ClipScoreScorer(Scorer):
    """Cosine similarity of the stored image and text embeddings of one feature set."""

    name = "clip_score"
    version = 1

    class Params(Params):
        model: str = "l14"
        source: Literal["features", "metadata"] = "features"

    @property
    def needs(self) -> Needs:  # depends on params: which feature set, or which parquet column
        model = self.params.model
        if self.params.source == "metadata":
            return Needs(metadata=(f"clip_{model}_similarity_score",))
        return Needs(features=(f"{model}_img", f"{model}_txt"))

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> np.ndarray:
        model = self.params.model
        if self.params.source == "metadata":
            return batch.metadata[f"clip_{model}_similarity_score"].astype(np.float32)
        image, text = batch.features[f"{model}_img"], batch.features[f"{model}_txt"]
        # stored features are unit-norm in fp16; renormalising in fp32 keeps the cosine exact for any input
        image = image / np.maximum(np.linalg.norm(image, axis=1, keepdims=True), 1e-12)
        text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
        return np.einsum("ij,ij->i", image, text).astype(np.float32)


@hookimpl
def register_scorers(register):
    register(ClipScoreScorer)
