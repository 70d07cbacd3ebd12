"""FLYT's losses: the w-weighted CLIP loss (upstream) and the downstream losses of the stepped reference model.

Weighted CLIP loss (flyt.md section 1).  With unit-norm image and text embeddings u_i, t_i of a (global) batch,
logits l_ij = tau * u_i . t_j and weights w on the simplex (w = softmax(scores)):

    L_I = sum_i w_i * [ logsumexp_j (l_ij + log w_j) - l_ii - log w_i ]      (image -> text)
    L_T = the same over the transposed logits                               (text -> image)
    L   = (L_I + L_T) / 2

i.e. a cross-entropy whose logits get a per-column bias log w_j (weights act on the negatives *and* on the
positive), each row's term weighted by w_i and the rows summed (sum w = 1 makes it a mean).  It is computed in
this logsumexp form with log w = log_softmax(scores), never as exp(logits): at tau = 100 a cosine above 0.887
overflows float32 (flyt.md trap 3).

Properties (tests/plugins/test_flyt_loss.py checks each numerically; our statement of them, the paper's
section 3.5 text was not available to us):
    1. uniform weights give open_clip's ClipLoss exactly;
    2. a weight of 0 removes its example: the loss equals the loss of the batch without it (weights unchanged);
    3. weights proportional to integer counts n_i equal the CLIP loss of the batch in which example i appears
       n_i times and copies of one example count as positives of each other (not as false negatives);
    4. all the weight on one example gives loss 0 (a batch of one example has nothing to contrast).

Downstream losses (flyt.md 2.4): ``ce`` cross-entropy of image embeddings against one prompt embedding per
class with logit scale 1 (FLYT's default without ``--downstream_logit_scale``), ``ce_temp`` the same with a
learned log-space scale (init ln(1/0.07)), ``clip`` open_clip's ClipLoss on (image, templated class caption)
pairs at that learned scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DOWNSTREAM_LOSSES = ("ce", "ce_temp", "clip")
#: ln(1 / 0.07): CLIP's initial temperature, FLYT's README init of the learned downstream scale
DOWNSTREAM_LOGIT_SCALE_INIT = 2.65926


def weighted_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                       log_w: torch.Tensor) -> torch.Tensor:
    """The symmetric w-weighted CLIP loss of a batch (see the module docstring).

    Args:
        image, text: (B, d) unit-norm embeddings, row i of each forming pair i.
        scale: the logit scale tau (already exponentiated), a scalar tensor.
        log_w: (B,) log-weights, e.g. ``log_softmax(scores)``; ``-inf`` marks a weight of exactly 0.
    """
    logits = scale * image @ text.T
    return (_weighted_ce(logits, log_w) + _weighted_ce(logits.T, log_w)) / 2


def _weighted_ce(logits: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """sum_i w_i [logsumexp_j(l_ij + log w_j) - l_ii - log w_i]; rows with w_i = 0 contribute exactly 0."""
    normaliser = torch.logsumexp(logits + log_w[None, :], dim=1)
    per_row = normaliser - logits.diagonal() - log_w
    weights = log_w.exp()
    return (weights * torch.where(weights > 0, per_row, torch.zeros_like(per_row))).sum()


def classification_ce(image: torch.Tensor, classes: torch.Tensor, labels: torch.Tensor,
                      scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Mean cross-entropy of unit-norm image embeddings against one unit-norm embedding per class."""
    return F.cross_entropy(scale * image @ classes.T, labels)


def clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """open_clip's ClipLoss (mean of the two directions' cross-entropies) on matched rows."""
    logits = scale * image @ text.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
