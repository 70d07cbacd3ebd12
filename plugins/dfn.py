"""Scorer ``dfn``: a Data Filtering Network, a CLIP trained on high-quality pairs whose only job is to filter.

Card
    Paper: Fang et al. 2024, "Data Filtering Networks" (ICLR 2024, arXiv 2309.17425).  No public filtering
        code; the filter networks are CLIPs trained with ordinary CLIP training (scorers.md section 4).
    Fit (``plugins/_cliptrain.py``, open_clip's model, ``ClipLoss``, AdamW and ``cosine_lr``):
        1. start from ``model`` (+ ``init``): ``world:b32`` / ``world:l14`` on nano (the paper's best filter
           starts from OpenAI's B/32 weights, "OAI-init"), an open_clip config name with a checkpoint, or a
           config name alone (random init: from scratch);
        2. ``hq``: contrastive training on the high-quality pairs (``world:hq`` on nano, the HQITP-350M role;
           at real scale a folder in the pool layout such as CC12M) for ``steps`` steps of ``train_batch``,
           ``val_fraction`` of them held out to report a validation loss;
        3. ``ft`` (DFN-FT, optional): ``ft_steps`` more steps on a mix of the labelled sets in ``finetune``
           (``world:downstream`` = the ImageNet-train role, ``world:labelled/<task>``, or eval-layout folders),
           each image captioned with one of its set's classification templates (``"a photo of a {c}."``),
           plus the HQ pairs when ``finetune_pairs`` (the paper fine-tunes on ImageNet with templates plus
           MS-COCO and Flickr30k pairs; the HQ pairs stand in for the latter two).
        With ``steps = 0`` and ``ft_steps = 0`` nothing is trained: the starting checkpoint is the filter (a
        user's DFN, e.g. apple/DFN-public's ViT-B/32 converted to open_clip, ``model: ViT-B-32, init: PATH``);
        the fit then only records its path and sha256.
    Score (``harness/pixels.py``): cosine of the L2-normalised image and caption embeddings of each pool
        row, from the tar shards' pixels; NaN for rows without an image.
    Outputs: ``score``.  Recipes: ``dfn_top15``, ``dfn_ft_top15`` (top 15% of the pool).
    Stats (fit manifest): first/last training loss, validation loss before and after each phase.
    Checks: tests/plugins/test_dfn.py (fit determinism and resume, checkpoint loading, the pixel path's
        equality with direct model calls, parrot-sign AUC against the L/14 CLIP score on the nano-xs world).
    Versions: 1 - first release.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydantic

from filterbench.harness.assets import ModelRef, load_model, resolve_labelled, resolve_model, resolve_pairs
from filterbench.harness.contract import StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.pixels import Encoder, PixelParams, PixelScorer, resolve_device
from filterbench.harness.pool import Pool
from filterbench.harness.seeding import derive_int_seed, derive_rng
from filterbench.harness.store import cached_digest
from filterbench.plugins._cliptrain import (
    LabelledSource,
    Mixture,
    Phase,
    Trainer,
    pair_sources,
    save_state_dict,
    torch_for_fit,
)

NETWORK_JSON = "network.json"
WEIGHTS = "model.pt"


class TrainParams(PixelParams):
    """What the learned filters (dfn, hype) share: the starting model, the HQ set and the training schedule."""

    model: str = "world:b32"
    init: str = ""
    hq: str = "world:hq"
    steps: int = pydantic.Field(default=400, ge=0)
    train_batch: int = pydantic.Field(default=64, ge=2)
    lr: float = pydantic.Field(default=1e-4, gt=0)
    warmup: int = pydantic.Field(default=20, ge=0)
    weight_decay: float = pydantic.Field(default=0.1, ge=0)
    val_fraction: float = pydantic.Field(default=0.05, ge=0, lt=1)
    checkpoint_every: int = pydantic.Field(default=100, ge=1)


class DfnScorer(PixelScorer):
    """Cosine image-caption similarity under a CLIP trained on high-quality pairs (and optionally fine-tuned
    on labelled sets captioned with their templates)."""

    name = "dfn"
    version = 1
    outputs = ("score",)

    class Params(TrainParams):
        finetune: tuple[str, ...] = ()
        finetune_pairs: bool = True
        ft_steps: int = pydantic.Field(default=0, ge=0)
        ft_lr: float = pydantic.Field(default=5e-5, gt=0)

    # -- fit ----------------------------------------------------------------------------------------------------
    def fit(self, pool: Pool, ctx: StageContext) -> None:
        p = self.params
        if p.ft_steps and not p.finetune:
            raise PluginError("dfn: ft_steps > 0 needs labelled sets in finetune (e.g. [world:downstream])")
        start = resolve_model(p.model, p.init or None, pool.root)
        if p.steps == 0 and p.ft_steps == 0:
            return record_network(ctx.state_dir, start, trained=False)
        torch = torch_for_fit(derive_int_seed(ctx.seed, "fit", self.name, "init"))
        device = resolve_device(p.device)
        model, train_pre, eval_pre, tokenizer = load_model(start, device)
        phases = self.phases(pool, ctx)
        trainer = Trainer(model, train_pre, eval_pre, tokenizer, clip_loss(torch), ctx,
                          (ctx.seed, "fit", self.name), device=device, checkpoint_every=p.checkpoint_every,
                          after_step=clamp_logit_scale)
        history = trainer.run(phases)
        save_state_dict({"state_dict": model.state_dict()}, ctx.state_dir / WEIGHTS)
        record_network(ctx.state_dir, ModelRef(start.arch, ctx.state_dir / WEIGHTS, "fit"), trained=True,
                       start=start, history=history)
        record_history(ctx, history)

    def phases(self, pool: Pool, ctx: StageContext) -> list[Phase]:
        p = self.params
        rng = derive_rng(ctx.seed, "fit", self.name, "split")
        train_pairs, val_pairs = pair_sources(Pool(resolve_pairs(p.hq, pool.root)), p.val_fraction, rng)
        phases = [Phase("hq", train_pairs, p.steps, p.train_batch, p.lr, p.warmup, p.weight_decay, val_pairs)]
        if p.ft_steps:
            labelled = [LabelledSource(resolve_labelled(spec, pool.root)) for spec in p.finetune]
            mix = Mixture([*labelled, *([train_pairs] if p.finetune_pairs else [])])
            phases.append(Phase("ft", mix, p.ft_steps, p.train_batch, p.ft_lr, p.warmup, p.weight_decay,
                                val_pairs))
        return phases

    # -- score --------------------------------------------------------------------------------------------------
    def load_encoder(self, ctx: StageContext, device: str, precision: str) -> Encoder:
        model, _, preprocess, tokenizer = load_model(network_ref(ctx.state_dir), device)
        return Encoder(model, preprocess, tokenizer, device, precision)

    def score_embeddings(self, image, text) -> dict:
        import torch

        f = torch.nn.functional
        return {"score": (f.normalize(image, dim=-1) * f.normalize(text, dim=-1)).sum(-1)}


# -- shared with hype --------------------------------------------------------------------------------------------
def clip_loss(torch):
    """open_clip's symmetric InfoNCE on L2-normalised embeddings with the model's learned temperature."""
    import open_clip

    loss = open_clip.ClipLoss()
    normalize = torch.nn.functional.normalize

    def compute(model, pixels, tokens):
        image, text = model.encode_image(pixels), model.encode_text(tokens)
        return {"loss": loss(normalize(image, dim=-1), normalize(text, dim=-1), model.logit_scale.exp())}

    return compute


def clamp_logit_scale(model) -> None:
    """open_clip_train's clamp of the temperature: logit scale in [0, log 100]."""
    import math

    model.logit_scale.clamp_(0, math.log(100))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_network(state_dir: Path, ref: ModelRef, trained: bool, start: ModelRef | None = None,
                   history: dict | None = None) -> None:
    """``network.json``: the architecture and weights the score stage loads (and where they came from)."""
    weights = ref.checkpoint
    record = {"arch": ref.arch, "trained": trained,
              "weights": WEIGHTS if trained else (str(weights) if weights else None),
              "sha256": sha256_of(weights) if weights else None,
              "start": (start or ref).describe(), "history": history or {}}
    (state_dir / NETWORK_JSON).write_text(json.dumps(record, indent=1, sort_keys=True))


def network_ref(state_dir: Path) -> ModelRef:
    """The model a fit recorded: its own weights, or the untouched starting checkpoint."""
    path = Path(state_dir) / NETWORK_JSON
    if not path.is_file():
        raise PluginError(f"{path}: missing (the fit state of a learned filter)")
    record = json.loads(path.read_text())
    weights = record["weights"]
    if weights is None:
        return ModelRef(record["arch"], None, "fit")
    if record["trained"]:
        return ModelRef(record["arch"], Path(state_dir) / weights, "fit")  # verified with the artifact
    return ModelRef(record["arch"], _unchanged(Path(weights), record.get("sha256")), "fit")


def _unchanged(checkpoint: Path, recorded: str | None) -> Path:
    """A user's checkpoint that the fit only recorded (path and sha256) lives outside the store, where nothing
    verifies it: check it here, or an edited file would score under the fit's key."""
    try:
        actual = cached_digest(checkpoint)
    except OSError as exc:
        raise PluginError(f"{checkpoint}: the checkpoint this dfn fit recorded is unreadable "
                          f"({exc.strerror or exc})") from None
    if recorded is None or actual != f"sha256:{recorded}":
        raise PluginError(f"{checkpoint}: the checkpoint changed since the dfn fit recorded its sha256 "
                          f"({str(recorded)[:12]}...); restore it, or delete that fit artifact to record it again")
    return checkpoint


def record_history(ctx: StageContext, history: dict) -> None:
    """First and last logged training values and the validation values of each phase, as manifest stats."""
    for phase, log in history.items():
        for name, points in log.items():
            if name.startswith("val"):
                for key, value in points.items():
                    ctx.stat(f"{phase}_{name}_{key}", value)
            elif points:
                ctx.stat(f"{phase}_first_{name}", points[0][1])
                ctx.stat(f"{phase}_last_{name}", points[-1][1])


@hookimpl
def register_scorers(register):
    register(DfnScorer)
