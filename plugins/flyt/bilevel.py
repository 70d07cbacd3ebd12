"""One FLYT step's hypergradient: d L_down(theta+(g(w))) / d scores, for a global batch (flyt.md 2.2, 2.7).

With scores s of the global upstream batch and w = softmax(s):

1. g = d L_up(theta; w) / d theta, by one backward pass: the weighted loss is computed on the gathered,
   detached embeddings (giving a = dL_up/d(embeddings) and the logit scale's gradient), then a is pulled back
   through each rank's own embeddings and SUM-reduced.
2. theta+ = AdamW(theta, g) with the live moments; its Jacobian in g is diagonal and closed-form (:mod:`adamw`).
3. v = (d theta+ / d g) * grad L_down(theta+), one ordinary backward pass at theta+.
4. <g(w), v> = sum_i <a_i(w), J_i v> (+ the logit-scale coordinate), where J_i v, the directional derivative
   of example i's embeddings along v, comes from one forward-mode JVP of the embedding network (math SDPA
   kernel: the fused kernels have no forward-mode derivative).  Then d L_down / d s = d/ds <a(U, T; w(s)), J v>,
   a mixed second derivative of the contrastive loss at embedding level (B x B work, no network pass).

The reference logit scale's coordinate of <g, v> is kept (FLYT drops it, trap 7); it is exactly zero for the
downstream losses here, which never read the reference's scale, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call, jvp

from filterbench.plugins.flyt.adamw import AdamWConfig, AdamWState, InnerStep, adamw_step, jacobian_diag
from filterbench.plugins.flyt.dist import SINGLE, Group
from filterbench.plugins.flyt.loss import classification_ce, clip_loss, weighted_clip_loss

Tensors = dict[str, torch.Tensor]
SCALE = "logit_scale"
_DOWN_SCALE = "\0downstream_logit_scale"  # a name no model parameter has


class Reference:
    """An open_clip CLIP called functionally: embeddings for any parameter dict."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        self.buffers = dict(model.named_buffers())

    def params(self) -> Tensors:
        return {k: p.detach().clone() for k, p in self.model.named_parameters()}

    def embed(self, params: Tensors, images: torch.Tensor | None, texts: torch.Tensor | None):
        """Unit-norm (image, text) embeddings (either may be None) under ``params``."""
        out = functional_call(self.model, {**self.buffers, **params}, (images, texts))
        return out[0], out[1]


@dataclass
class Upstream:
    images: torch.Tensor  # this rank's preprocessed images
    texts: torch.Tensor   # this rank's tokens
    size: int             # rows of the global batch


@dataclass
class Downstream:
    images: torch.Tensor
    labels: torch.Tensor
    class_texts: torch.Tensor | None  # this rank's share of the class prompts (ce, ce_temp)
    captions: torch.Tensor | None     # this rank's captions, one per image (clip)


@dataclass(frozen=True)
class StepConfig:
    lr: float
    loss: str = "ce_temp"
    adam: AdamWConfig = AdamWConfig()


@dataclass
class StepResult:
    dscores: torch.Tensor  # d L_down / d s over the global batch
    inner: InnerStep       # theta+ and the advanced moments
    down_scale_grad: torch.Tensor | None
    up_loss: float
    down_loss: float


def hypergradient(ref: Reference, theta: Tensors, state: AdamWState, scores: torch.Tensor, up: Upstream,
                  down: Downstream, cfg: StepConfig, down_scale: torch.Tensor | None = None,
                  group: Group = SINGLE) -> StepResult:
    """Steps 1-4 of the module docstring for this rank's share; ``scores`` is the *global* score vector."""
    log_w = torch.log_softmax(scores.detach(), dim=0)
    grads, cache, up_loss = upstream_gradient(ref, theta, up, log_w, group)
    inner = adamw_step(theta, grads, state, cfg.lr, cfg.adam)
    jac = jacobian_diag(inner, grads, cfg.lr, cfg.adam)
    down_grads, scale_grad, down_loss = downstream_gradient(ref, inner.params, down, cfg.loss, down_scale, group)
    v = {k: jac[k] * down_grads[k] for k in down_grads}
    dscores = score_gradient(ref, theta, up, v, cache, scores, group)
    return StepResult(dscores, inner, scale_grad, up_loss, down_loss)


def _leaves(params: Tensors) -> Tensors:
    return {k: p.detach().requires_grad_(True) for k, p in params.items()}


def _grads(loss: torch.Tensor, params: Tensors) -> Tensors:
    names = list(params)
    found = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return {n: torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, found)}


def upstream_gradient(ref: Reference, theta: Tensors, up: Upstream, log_w: torch.Tensor, group: Group):
    """(g, cached detached global embeddings and scale, the weighted loss)."""
    params = _leaves(theta)
    image, text = ref.embed(params, up.images, up.texts)
    glob_img = group.gather(image).requires_grad_(True)
    glob_txt = group.gather(text).requires_grad_(True)
    scale = params[SCALE]
    loss = weighted_clip_loss(glob_img, glob_txt, scale.exp(), log_w)
    a_img, a_txt, a_scale = torch.autograd.grad(loss, (glob_img, glob_txt, scale))
    mine = group.share(up.size)
    encoder = {k: p for k, p in params.items() if k != SCALE}
    pulled = (image * a_img[mine]).sum() + (text * a_txt[mine]).sum()
    grads = group.sum_(_grads(pulled, encoder))
    grads[SCALE] = a_scale  # applied after the gather: the same full gradient on every rank
    cache = (glob_img.detach(), glob_txt.detach(), scale.detach())
    return grads, cache, float(loss.detach())


def downstream_gradient(ref: Reference, theta_plus: Tensors, down: Downstream, kind: str,
                        down_scale: torch.Tensor | None, group: Group):
    """(grad L_down at theta+, its derivative in the learned downstream log-scale or None, L_down)."""
    params = _leaves(theta_plus)
    scale_leaf = None if kind == "ce" else down_scale.detach().requires_grad_(True)
    scale = 1.0 if scale_leaf is None else scale_leaf.exp()
    image = group.gather_rows(ref.embed(params, down.images, None)[0])
    if kind == "clip":
        text = group.gather_rows(ref.embed(params, None, down.captions)[1])
        loss = clip_loss(image, text, scale)
    else:
        classes = group.gather_rows(ref.embed(params, None, down.class_texts)[1])
        loss = classification_ce(image, classes, group.gather(down.labels), scale)
    leaves = {k: p for k, p in params.items() if k != SCALE}
    if scale_leaf is not None:
        leaves[_DOWN_SCALE] = scale_leaf
    grads = _grads(loss, leaves)
    scale_grad = grads.pop(_DOWN_SCALE, None)  # applied after the gather: full on every rank, not reduced
    grads = group.sum_(grads)
    grads[SCALE] = torch.zeros_like(params[SCALE])  # no downstream loss reads the reference's own scale
    return grads, scale_grad, float(loss.detach())


def embedding_tangents(ref: Reference, theta: Tensors, up: Upstream, v: Tensors):
    """J v: the derivative of this rank's (image, text) embeddings along the parameter direction ``v``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    encoder = {k: p.detach() for k, p in theta.items() if k != SCALE}
    fixed = {SCALE: theta[SCALE].detach()}
    tangent = {k: v[k].detach() for k in encoder}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused eval path: no forward AD
    try:
        with sdpa_kernel(SDPBackend.MATH):
            _, (d_img, d_txt) = jvp(lambda p: ref.embed({**p, **fixed}, up.images, up.texts), (encoder,),
                                    (tangent,))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return d_img, d_txt


def score_gradient(ref: Reference, theta: Tensors, up: Upstream, v: Tensors, cache, scores: torch.Tensor,
                   group: Group) -> torch.Tensor:
    """d <g(w(s)), v> / d s over the global batch (identical on every rank)."""
    d_img, d_txt = (group.gather(t) for t in embedding_tangents(ref, theta, up, v))
    image, text, scale = (t.detach().requires_grad_(True) for t in cache)
    s = scores.detach().requires_grad_(True)
    loss = weighted_clip_loss(image, text, scale.exp(), torch.log_softmax(s, dim=0))
    g_img, g_txt, g_scale = torch.autograd.grad(loss, (image, text, scale), create_graph=True)
    inner = (g_img * d_img).sum() + (g_txt * d_txt).sum() + (g_scale * v[SCALE]).sum()
    return torch.autograd.grad(inner, s)[0].detach()
