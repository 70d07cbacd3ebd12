"""Scorers ``flyt`` and ``m_flyt``: FLYT's learned scoring model and M-FLYT's learned mixture of scores.

Card
    Paper: Shechter & Carmon 2025, "Filter Like You Test: Data-Driven Data Filtering for CLIP Pretraining"
        (arXiv 2503.08805; NeurIPS 2025).  DataComp medium, M-FLYT + Soft Cap Sampling: ImageNet 0.401,
        Average of 38 tasks 0.377.
    Reference: formll/FLYT (``flyt/train.py``, ``flyt/factory.py``, ``flyt/optimizer.py``, ``flyt/loss.py``);
        rewritten from the facts of ../shared/reference/flyt.md, not ported.
    Method: a scoring model gives each upstream example a score; w = softmax(scores) over the global batch
        weights the reference CLIP's contrastive loss; the reference takes one AdamW step on it; the scoring
        model is trained to minimise the stepped reference's downstream loss (cross-entropy against class
        prompts of a labelled downstream set), through the exact hypergradient (:mod:`.bilevel`).
    ``flyt``: a SwiGLU head over frozen (image, text) embeddings.  The frozen base is the pool's stored
        features (``<features>_img``/``_txt``; DataComp's OpenAI B/32 features are FLYT's frozen base), so
        scoring costs what CLIP score costs; the reference model reads raw images and captions from the tars.
    ``m_flyt``: a linear model over k score columns of other scorers, each standardised over the pool
        (z = (x - pool mean) / pool std; FLYT's code has no standardisation, its inputs came pre-standardised,
        with statistics the paper does not give).  Its learned weights are recorded as fit stats.
    Missing inputs: a row with a NaN input (an image scorer's row without an image) gets ``MISSING_SCORE``
        (-1e9: last in a ranking, weight 0 in a sampler) and is never a training row.
    Released checkpoints (real scale): ``released`` points to ``flyt.pt`` (head loaded from its
        ``glu_model.*`` weights; the base's GELU/QuickGELU mismatch is warned about) or ``mflyt.pt``
        (``layers.0.*``, inputs listed in the released order, see ``heads.RELEASED_MFLYT_INPUTS``); no fit.
    Params: see the ``Params`` classes.  Defaults are the public code's (flyt.md 2.6): 5,000 steps of 4,096
        upstream and 3,072 downstream examples, reference lr 5e-5 and scoring lr 1e-3 (cosine, 100 warm-up
        steps), AdamW (0.9, 0.98, 1e-6, wd 0.2), ``update_reference``, learned downstream temperature.  Nano
        recipes set smaller batches and step counts (baselines/flyt_top20.yaml says which and why).
    Multi-process: ``processes`` > 1 runs the fit under torchrun (gloo on CPU, nccl on CUDA) with the global
        batch split across ranks; the result equals a one-process fit up to float summation order.
    Checks: tests/plugins/test_flyt_*.py (weighted loss vs ClipLoss and its properties, AdamW step and
        Jacobian, hypergradient vs finite differences, 2 ranks vs 1, determinism, kill and resume, nano-xs AUC,
        released formats).
    Versions: 1 - first release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from filterbench.harness.contract import Needs, Params, PoolBatch, ScoreInput, Scorer, StageContext, input_prefixes
from filterbench.harness.errors import PluginError


#: the score of a row for which an input column is NaN (an image scorer's row without an image)
MISSING_SCORE = -1e9


class TrainingParams(Params):
    """What both scorers train with (flyt.md 2.6 defaults)."""

    reference_model: str = "world:b32"
    reference_checkpoint: str | None = None
    downstream: str = "world:downstream"
    loss: Literal["ce", "ce_temp", "clip"] = "ce_temp"
    steps: int = pydantic.Field(default=5000, ge=1)
    up_batch: int = pydantic.Field(default=4096, ge=2)
    down_batch: int = pydantic.Field(default=3072, ge=1)
    lr_reference: float = pydantic.Field(default=5e-5, ge=0.0)
    lr_scoring: float = pydantic.Field(default=1e-3, gt=0.0)
    warmup: int = pydantic.Field(default=100, ge=1)
    update_reference: bool = True
    weight_decay: float = pydantic.Field(default=0.2, ge=0.0)
    fit_rows: int | None = pydantic.Field(default=None, ge=2)
    checkpoint_every: int = pydantic.Field(default=1000, ge=1)
    processes: int = pydantic.Field(default=1, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "fp64"] = "fp32"
    released: str | None = None


class _LearnedScorer(Scorer):
    """Shared fit/score plumbing; subclasses say what the scoring model reads."""

    batch_rows = 65536

    def fit_identity(self) -> dict[str, Any]:
        identity = self.identity()
        identity["params"].pop("checkpoint_every")  # when checkpoints are written changes no result
        return identity

    def fit(self, pool, ctx: StageContext) -> None:
        from filterbench.plugins.flyt import fitting

        fitting.run(self, pool, ctx)

    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_loaded_from", None) == ctx.state_dir:
            return
        import torch

        from filterbench.plugins.flyt.trainer import scoring_model

        meta = json.loads((ctx.state_dir / "scorer.json").read_text())
        model = scoring_model(meta["kind"], meta["width"])
        model.load_state_dict(torch.load(ctx.state_dir / "scorer.pt", map_location="cpu", weights_only=True))
        self._model, self._meta, self._loaded_from = model.float().eval(), meta, ctx.state_dir

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> np.ndarray:
        import torch

        self.setup(ctx)
        inputs = self.model_inputs(batch)
        missing = ~np.isfinite(inputs).all(axis=1)
        with torch.no_grad():
            scores = self._model(torch.from_numpy(np.where(missing[:, None], 0.0, inputs))).numpy()
        # a row an input could not score (no image) ranks last and has weight exp(-1e9) = 0 in a sampler
        return np.where(missing, MISSING_SCORE, scores).astype(np.float32)

    def model_inputs(self, batch: PoolBatch) -> np.ndarray:
        raise NotImplementedError


class FlytScorer(_LearnedScorer):
    """FLYT: a SwiGLU head over the pool's stored (image, text) features, trained by FLYT's bilevel loop."""

    name = "flyt"
    version = 1

    class Params(TrainingParams):
        features: str = "b32"

    @property
    def needs(self) -> Needs:
        return Needs(features=(f"{self.params.features}_img", f"{self.params.features}_txt"))

    def model_inputs(self, batch: PoolBatch) -> np.ndarray:
        f = self.params.features
        return np.concatenate([batch.features[f"{f}_img"], batch.features[f"{f}_txt"]], axis=1)


class MixInput(pydantic.BaseModel):
    """One input of M-FLYT: a scorer (with params) and which of its columns."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    scorer: str
    params: dict[str, Any] = {}
    column: str = "score"


class MFlytScorer(_LearnedScorer):
    """M-FLYT: a linear mixture of standardised score columns, trained by FLYT's bilevel loop."""

    name = "m_flyt"
    version = 1

    class Params(TrainingParams):
        inputs: tuple[MixInput, ...] = pydantic.Field(min_length=1)

    def required_scores(self) -> tuple[ScoreInput, ...]:
        return tuple(ScoreInput(i.scorer, dict(i.params)) for i in self.params.inputs)

    def input_columns(self) -> list[str]:
        """The qualified names of the mixed columns, in input order (as ``batch.scores`` holds them)."""
        prefixes = input_prefixes([i.scorer for i in self.params.inputs])
        return [f"{prefix}.{i.column}" for prefix, i in zip(prefixes, self.params.inputs)]

    def model_inputs(self, batch: PoolBatch) -> np.ndarray:
        raw = np.stack([batch.scores[c] for c in self.input_columns()], axis=1).astype(np.float64)
        mean, std = np.asarray(self._meta["mean"]), np.asarray(self._meta["std"])
        return ((raw - mean) / std).astype(np.float32)


def check_released(path: str) -> Path:
    found = Path(path).expanduser()
    if not found.is_file():
        raise PluginError(f"released checkpoint {path!r}: no such file")
    return found
