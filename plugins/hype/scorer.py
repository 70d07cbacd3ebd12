"""Scorers ``hype`` (image and text specificity, hyperbolic alignment) and ``hype_composite`` (HYPE's score).

Card
    Paper: Kim et al. 2024, "HYPE: Hyperbolic Entailment Filtering for Underspecified Images and Texts"
        (ECCV 2024, arXiv 2404.17507); model and objective from Desai et al. 2023, MERU (ICML 2023).
    Reference: naver-ai/hype ``hyperbolic.py`` (``expm``, ``similarity``, ``entailment``, ``specificity``) and
        ``model.py``; facebookresearch/meru ``meru/lorentz.py``, ``meru/models.py`` (read, rewritten: our
        Lorentz functions are numerically stable versions of the same formulas, :mod:`.lorentz`).
    Fit (``hype``): a hyperbolic CLIP (:mod:`.model`: open_clip towers + learned curvature, tower scales and
        temperature) trained with MERU's objective (contrastive over -d_L logits + ``entailment_weight`` x
        the entailment loss, AdamW 0.9/0.98, no decay on scalars, MERU's clamps) on the HQ pairs, starting from
        ``model``/``init`` like ``dfn``; then ``references`` random pool rows with images (seeded) are embedded
        by the trained model as the reference sets.  With ``steps = 0`` the starting checkpoint must already be
        hyperbolic: HYPE's released ViT-L/14 (``model: ViT-L-14, init: /path/ckpt.pt``; CC BY-NC 4.0, the
        user supplies it) with its ``reference.pt`` as ``reference_file`` (else pool rows are embedded).
        Manifest stats: final curvature, entailment and contrastive loss, logit scale, validation losses.
    Score (``harness/pixels.py``), per row with image tangent vector v and caption tangent vector t:
        ``eps_i`` = mean over reference texts t_r of ext(t_r, v) - aper(t_r)   (image specificity);
        ``eps_t`` = mean over reference images v_r of ext(t, v_r) - aper(t)   (text specificity);
        ``neg_dist`` = -d_L(v, t).  Higher is better for all three; NaN for rows without an image.
    ``hype_composite``: HYPE's composite ``eps_i + eps_t - d_L + cos theta + c_IN``, with each term standardised
        over the pool (mean and standard deviation of its finite values, computed in fit) and weighted by
        ``weights``; cos theta is ``clip_score`` (L/14 by default) and c_IN the ``image_clusters`` membership of
        DataComp's ImageNet clusters (``in_target``).  No weighting or normalisation was published: the raw
        terms live on different scales (radians, distances, cosines, 0/1).
    Recipes: ``hype`` (composite, top 15%), ``hype_dfn`` (its top 15% united with DFN's top 15%).
    Checks: tests/plugins/test_hype.py, tests/plugins/test_lorentz.py.
    Versions: 1 - first release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from filterbench.harness.assets import ModelRef, load_model, resolve_model, resolve_pairs
from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, ScoreInput, StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.pixels import Encoder, PixelScorer, resolve_device
from filterbench.harness.pool import Pool
from filterbench.harness.samples import decode_image
from filterbench.harness.seeding import derive_int_seed, derive_rng
from filterbench.plugins._cliptrain import Phase, Trainer, pair_sources, save_state_dict, torch_for_fit
from filterbench.plugins.dfn import TrainParams, record_history, sha256_of
from filterbench.plugins.hype import lorentz
from filterbench.plugins.hype.model import HyperbolicCLIP, load_weights, meru_loss, read_references

WEIGHTS = "ckpt.pt"
REFERENCES = "reference.pt"
NETWORK_JSON = "network.json"


class HypeScorer(PixelScorer):
    """HYPE's three signals from a MERU-style hyperbolic CLIP: image and text specificity and -d_L."""

    name = "hype"
    version = 1
    outputs = ("eps_i", "eps_t", "neg_dist")

    class Params(TrainParams):
        model: str = "world:l14"
        lr: float = pydantic.Field(default=2e-4, gt=0)
        weight_decay: float = pydantic.Field(default=0.2, ge=0)
        entailment_weight: float = pydantic.Field(default=0.2, ge=0)
        curvature: float = pydantic.Field(default=1.0, gt=0)
        learn_curvature: bool = True
        references: int = pydantic.Field(default=2000, ge=1)
        reference_file: str = ""

    # -- fit ----------------------------------------------------------------------------------------------------
    def fit(self, pool: Pool, ctx: StageContext) -> None:
        p = self.params
        torch = torch_for_fit(derive_int_seed(ctx.seed, "fit", self.name, "init"))
        device = resolve_device(p.device)
        start = resolve_model(p.model, p.init or None, pool.root)
        model, train_pre, eval_pre, tokenizer = self._model(start, device, require_hyperbolic=p.steps == 0)
        if p.steps:
            rng = derive_rng(ctx.seed, "fit", self.name, "split")
            train, held = pair_sources(Pool(resolve_pairs(p.hq, pool.root)), p.val_fraction, rng)
            phase = Phase("hq", train, p.steps, p.train_batch, p.lr, p.warmup, p.weight_decay, held)
            trainer = Trainer(model, train_pre, eval_pre, tokenizer, meru_loss(p.entailment_weight), ctx,
                              (ctx.seed, "fit", self.name), device=device, checkpoint_every=p.checkpoint_every,
                              after_step=HyperbolicCLIP.clamp_)
            history = trainer.run([phase])
            record_history(ctx, history)
        model.eval()
        save_state_dict(model.published_state_dict(), ctx.state_dir / WEIGHTS)
        with torch.no_grad():
            refs = self._references(pool, ctx, Encoder(model, eval_pre, tokenizer, device, "fp32"))
        save_state_dict(refs, ctx.state_dir / REFERENCES)
        record = {"arch": start.arch, "start": start.describe(), "trained": bool(p.steps),
                  "start_sha256": sha256_of(start.checkpoint) if start.checkpoint else None,
                  "references": {"rows": int(len(refs["img"])), "source": p.reference_file or "pool"}}
        (ctx.state_dir / NETWORK_JSON).write_text(json.dumps(record, indent=1, sort_keys=True))
        with torch.no_grad():
            ctx.stat("curvature", float(model.c()))
            ctx.stat("logit_scale", float(model.logit_scale.exp()))
            ctx.stat("alpha_img", float(model.alpha_img.exp()))
            ctx.stat("alpha_txt", float(model.alpha_txt.exp()))

    def _model(self, ref: ModelRef, device: str, require_hyperbolic: bool):
        clip, train_pre, eval_pre, tokenizer = load_model(ModelRef(ref.arch, None, ref.source), device)
        model = HyperbolicCLIP(clip, self.params.curvature, self.params.learn_curvature).to(device)
        if ref.checkpoint is not None:
            load_weights(model, ref.checkpoint, require_hyperbolic)
        elif require_hyperbolic:
            raise PluginError(f"hype: steps = 0 needs a hyperbolic checkpoint as init "
                              f"(model {ref.arch!r} has none)")
        return model, train_pre, eval_pre, tokenizer

    def _references(self, pool: Pool, ctx: StageContext, encoder: Encoder) -> dict:
        """The reference sets: HYPE's file when given, else ``references`` random pool rows with an image."""
        import torch

        if self.params.reference_file:
            img, txt = read_references(Path(self.params.reference_file).expanduser())
            return {"img": img, "txt": txt}
        samples = pool.samples()
        rows = np.flatnonzero(samples.available)
        if not rows.size:
            raise PluginError(f"hype: the pool {pool.root} has no images to draw reference rows from")
        rng = derive_rng(ctx.seed, "fit", self.name, "references")
        rows = np.sort(rng.choice(rows, size=min(self.params.references, rows.size), replace=False))
        images, texts = [], []
        for start in range(0, len(rows), 256):
            chunk = rows[start:start + 256]
            data, captions = samples.read(chunk)
            pixels = encoder.pixels([decode_image(d, f"{pool.root} pool row {r}") for d, r in zip(data, chunk)])
            image, text = encoder.embed(pixels, captions)
            images.append(image.cpu())
            texts.append(text.cpu())
        return {"img": torch.cat(images), "txt": torch.cat(texts), "rows": torch.from_numpy(rows)}

    # -- score --------------------------------------------------------------------------------------------------
    def load_encoder(self, ctx: StageContext, device: str, precision: str) -> Encoder:
        record = json.loads((Path(ctx.state_dir) / NETWORK_JSON).read_text())
        weights = ModelRef(record["arch"], Path(ctx.state_dir) / WEIGHTS, "fit")
        model, _, eval_pre, tokenizer = self._model(weights, device, require_hyperbolic=True)
        img, txt = read_references(Path(ctx.state_dir) / REFERENCES)
        self._refs = (img.to(device), txt.to(device))
        return Encoder(model, eval_pre, tokenizer, device, precision)

    def score_embeddings(self, image, text) -> dict:
        ref_img, ref_txt = self._refs
        c = self._encoder.model.c()
        return {"eps_i": lorentz.entailment(ref_txt, image, c).mean(dim=0),
                "eps_t": lorentz.entailment(text, ref_img, c).mean(dim=1),
                "neg_dist": -lorentz.distance(image, text, c)}


# -- the composite ---------------------------------------------------------------------------------------------------
class Weights(Params):
    """Per-term weights of HYPE's composite (each term standardised over the pool first)."""

    eps_i: float = 1.0
    eps_t: float = 1.0
    neg_dist: float = 1.0
    clip: float = 1.0
    in_cluster: float = 1.0


class HypeCompositeScorer(Scorer):
    """HYPE's composite score, a weighted sum of pool-standardised terms."""

    name = "hype_composite"
    version = 1
    outputs = ("score",)
    needs = Needs()

    class Params(Params):
        hype: dict[str, Any] = pydantic.Field(default_factory=dict)
        weights: Weights = Weights()
        clip_model: str = "l14"
        image_clusters: dict[str, Any] = pydantic.Field(
            default_factory=lambda: {"model": "l14", "target": "imagenet_train", "clusters": 100000})

    def required_scores(self) -> tuple[ScoreInput, ...]:
        w = self.params.weights
        inputs = [ScoreInput("hype", dict(self.params.hype))]
        if w.clip:
            inputs.append(ScoreInput("clip_score", {"model": self.params.clip_model}))
        if w.in_cluster:
            inputs.append(ScoreInput("image_clusters", dict(self.params.image_clusters)))
        return tuple(inputs)

    def terms(self) -> dict[str, float]:
        """Input column -> weight, for the terms with a nonzero weight."""
        w = self.params.weights
        named = {"hype.eps_i": w.eps_i, "hype.eps_t": w.eps_t, "hype.neg_dist": w.neg_dist,
                 "clip_score.score": w.clip, "image_clusters.in_target": w.in_cluster}
        return {k: v for k, v in named.items() if v}

    def fit(self, pool, ctx: StageContext) -> None:
        stats = {}
        for column in self.terms():
            values = ctx.scores.column(column).astype(np.float64)
            finite = values[np.isfinite(values)]
            if finite.size < 2 or finite.std() == 0:
                raise PluginError(f"hype_composite: column {column} is constant or empty over the pool")
            stats[column] = {"mean": float(finite.mean()), "std": float(finite.std())}
            ctx.stat(f"{column}.mean", stats[column]["mean"])
            ctx.stat(f"{column}.std", stats[column]["std"])
        (ctx.state_dir / "standardise.json").write_text(json.dumps(stats, indent=1, sort_keys=True))

    def setup(self, ctx: StageContext) -> None:
        self._stats = json.loads((Path(ctx.state_dir) / "standardise.json").read_text())

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> np.ndarray:
        total = np.zeros(len(batch), dtype=np.float64)
        for column, weight in self.terms().items():
            s = self._stats[column]
            total += weight * (batch.scores[column].astype(np.float64) - s["mean"]) / s["std"]
        return total.astype(np.float32)
