"""A hyperbolic (MERU-style) CLIP built on an open_clip model, its MERU training loss and its checkpoints.

The towers are open_clip's; what is added is hyperbolic (scorers.md section 3): three learned scalars, each
stored as a logarithm as MERU and HYPE store them, and the Lorentz maths of :mod:`.lorentz`.

- ``curvature``: log c (the space has curvature -c); clamped to ``[log(c0/10), log(10 c0)]`` after every step;
- ``alpha_img``, ``alpha_txt``: log of the scale applied to each tower's projected features before the
  exponential map, initialised to ``log(1/sqrt(embed_dim))``, clamped to <= 0;
- the CLIP's own ``logit_scale`` (init log(1/0.07)), clamped to <= log(100).

``encode_image``/``encode_text`` return *tangent vectors at the origin* (no L2 normalisation), the quantity HYPE
stores and feeds to its hyperbolic functions.

Checkpoints use the layout of HYPE's released weights (naver-ai/hype ``ckpt.pt``): one flat state dict with
the OpenAI/open_clip CLIP keys (``visual.*``, ``transformer.*``, ``token_embedding.weight``,
``positional_embedding``, ``ln_final.*``, ``text_projection``, ``logit_scale``) plus ``curvature``,
``alpha_img`` and ``alpha_txt``.  HYPE's own loader reads it with ``strict=False``, so a key mismatch would
silently leave random weights (trap 12): :func:`load_weights` requires an exact match and names the file and
the first mismatching keys otherwise.  A plain open_clip checkpoint (no hyperbolic keys, possibly wrapped in
``{"state_dict": ...}``) is a valid *starting point* for training; the scalars then take their MERU
initial values.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from filterbench.harness.errors import PluginError
from filterbench.plugins._cliptrain import read_state_dict
from filterbench.plugins.hype import lorentz

HYPERBOLIC_KEYS = ("curvature", "alpha_img", "alpha_txt")


class HyperbolicCLIP(torch.nn.Module):
    """An open_clip CLIP whose embeddings live in the Lorentz model.

    Args:
        clip: an open_clip ``CLIP`` (``encode_image``/``encode_text``/``logit_scale``).
        curvature: the initial (and reference) curvature c0.
        learn_curvature: whether c is trained (MERU learns it).
    """

    def __init__(self, clip, curvature: float = 1.0, learn_curvature: bool = True):
        super().__init__()
        self.clip = clip
        dim = int(clip.text_projection.shape[1]) if hasattr(clip, "text_projection") else clip.visual.output_dim
        self.c0 = float(curvature)
        self.curvature = torch.nn.Parameter(torch.tensor(math.log(curvature)), requires_grad=learn_curvature)
        self.alpha_img = torch.nn.Parameter(torch.tensor(math.log(1 / math.sqrt(dim))))
        self.alpha_txt = torch.nn.Parameter(torch.tensor(math.log(1 / math.sqrt(dim))))

    @property
    def logit_scale(self):
        return self.clip.logit_scale

    def c(self) -> torch.Tensor:
        """The curvature magnitude c = exp(log c), in float32."""
        return self.curvature.float().exp()

    def encode_image(self, pixels) -> torch.Tensor:
        return self.alpha_img.exp() * self.clip.encode_image(pixels)

    def encode_text(self, tokens) -> torch.Tensor:
        return self.alpha_txt.exp() * self.clip.encode_text(tokens)

    def clamp_(self) -> None:
        """MERU's clamps, applied after every optimiser step."""
        with torch.no_grad():
            self.curvature.clamp_(math.log(self.c0 / 10), math.log(self.c0 * 10))
            self.alpha_img.clamp_(max=0)
            self.alpha_txt.clamp_(max=0)
            self.clip.logit_scale.clamp_(max=math.log(100))

    # -- the released checkpoint layout ------------------------------------------------------------------------
    def published_state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach().clone() for k, v in self.clip.state_dict().items()}
        state.update({k: getattr(self, k).detach().clone() for k in HYPERBOLIC_KEYS})
        return state


def meru_loss(entailment_weight: float):
    """MERU's objective: symmetric cross-entropy over ``-d_L`` logits scaled by ``exp(logit_scale)``, plus
    ``entailment_weight`` times the entailment loss (text the parent of its image); distances in float32."""

    def compute(model: HyperbolicCLIP, pixels, tokens) -> dict:
        image, text = model.encode_image(pixels), model.encode_text(tokens)
        c = model.c()
        logits = -lorentz.pairwise_distance(image, text, c) * model.logit_scale.float().exp()
        labels = torch.arange(len(logits), device=logits.device)
        f = torch.nn.functional
        contrastive = (f.cross_entropy(logits, labels) + f.cross_entropy(logits.T, labels)) / 2
        entail = lorentz.entailment_loss(text, image, c)
        return {"loss": contrastive + entailment_weight * entail, "contrastive": contrastive,
                "entailment": entail, "curvature": c, "logit_scale": model.logit_scale.exp()}

    return compute


def load_weights(model: HyperbolicCLIP, path: Path, require_hyperbolic: bool) -> bool:
    """Load a checkpoint into ``model`` with every key accounted for; returns whether it held the hyperbolic
    scalars (a released HYPE or our own fit) rather than a plain CLIP."""
    state = read_state_dict(path)
    scalars = {k: state.pop(k) for k in HYPERBOLIC_KEYS if k in state}
    if scalars and len(scalars) != len(HYPERBOLIC_KEYS):
        raise PluginError(f"{path}: has {sorted(scalars)} but not all of {list(HYPERBOLIC_KEYS)}")
    if require_hyperbolic and not scalars:
        raise PluginError(f"{path}: no {list(HYPERBOLIC_KEYS)}: a plain CLIP, not a hyperbolic checkpoint "
                          "(train one with steps > 0, or give HYPE's released ckpt.pt)")
    result = model.clip.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise PluginError(f"{path}: does not match the architecture: missing {result.missing_keys[:3]} "
                          f"({len(result.missing_keys)}), unexpected {result.unexpected_keys[:3]} "
                          f"({len(result.unexpected_keys)})")
    with torch.no_grad():
        for name, value in scalars.items():
            getattr(model, name).copy_(value.reshape(()))
    return bool(scalars)


def read_references(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """HYPE's ``reference.pt`` layout: ``{"img": (R, D), "txt": (R', D)}`` tangent vectors."""
    try:
        refs = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PluginError(f"{path}: unreadable reference set ({type(exc).__name__}: {exc})") from None
    if not isinstance(refs, dict) or "img" not in refs or "txt" not in refs:
        raise PluginError(f"{path}: a reference set needs keys 'img' and 'txt'")
    img, txt = refs["img"].float(), refs["txt"].float()
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1] or not len(img) or not len(txt):
        raise PluginError(f"{path}: 'img' {tuple(img.shape)} and 'txt' {tuple(txt.shape)} must be non-empty "
                          "(rows, dim) arrays of one dim")
    return img, txt
