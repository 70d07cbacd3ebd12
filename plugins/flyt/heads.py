"""FLYT's scoring models: the SwiGLU head over frozen embeddings and M-FLYT's linear mixer, plus loaders for
the released checkpoints (flyt.md sections 2.1 and 3).

- :class:`GluHead`: one SwiGLU layer with biases, ``w2(silu(w1 x + b1) * (w3 x + b3)) + b2``, over
  ``x = [image embedding, text embedding]`` (both unit norm, that order; trap 13), hidden width = input width.
  Parameter names follow the released ``flyt.pt`` (``glu_model.layers.0.w{1,2,3}.{weight,bias}``) so its head
  loads as it is.
- :class:`Mixer`: ``b + sum_k a_k z_k`` over k standardised score columns (``layers.0.{weight,bias}`` as in the
  released ``mflyt.pt``).  The bias is inert (softmax is shift-invariant).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from filterbench.harness.errors import PluginError
from filterbench.plugins._cliptrain import read_state_dict

log = logging.getLogger("filterbench.flyt")
#: the column order of the released mflyt.pt (flyt.md section 3)
RELEASED_MFLYT_INPUTS = ("vit-b-32", "vit-l-14", "DFN-Base", "DFN-FT", "CC2M-Classifier", "IN1K-Classifier", "FLYT",
                         "normsim_inf", "negCLIPLoss", "hype_lorentzian_distance", "hype_image_specificity",
                         "hype_text_specificity")


class _GluLayer(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int):
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Linear(dim, hidden), nn.Linear(hidden, out), nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class _GluStack(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([_GluLayer(dim, hidden, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[0](x)


class GluHead(nn.Module):
    """FLYT's head over concatenated unit-norm (image, text) embeddings of width ``embed_dim`` each."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.glu_model = _GluStack(2 * embed_dim, 2 * embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of rows ``x = [image, text]`` (each half re-normalised: stored features are fp16)."""
        image, text = x.split(self.embed_dim, dim=-1)
        x = torch.cat([F.normalize(image, dim=-1), F.normalize(text, dim=-1)], dim=-1)
        return self.glu_model(x).squeeze(-1)


class Mixer(nn.Module):
    """M-FLYT's linear mixing model over ``k`` standardised scores."""

    def __init__(self, k: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(k, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z).squeeze(-1)

    def weights(self) -> list[float]:
        return [float(w) for w in self.layers[0].weight.detach().reshape(-1)]


def load_released_head(path: Path, embed_dim: int) -> GluHead:
    """The head of a released FLYT scoring checkpoint (``flyt.pt``: the frozen base's and the head's weights).

    The base in that checkpoint is open_clip's ``ViT-B-32`` built as the GELU model with OpenAI weights (trap
    12), while DataComp's stored B/32 features come from OpenAI's QuickGELU model; scoring the stored features
    with this head is therefore close to, not identical with, the released pipeline: a warning says so.
    """
    state = {k[len("glu_model."):]: v for k, v in read_state_dict(path).items() if k.startswith("glu_model.")}
    if not state:
        raise PluginError(f"{path}: no glu_model.* weights (not a FLYT scoring checkpoint)")
    head = GluHead(embed_dim)
    try:
        head.glu_model.load_state_dict(state)
    except RuntimeError as exc:
        raise PluginError(f"{path}: head does not fit embeddings of width {embed_dim} ({exc})") from None
    warnings.warn(f"{path.name}: the released FLYT head was trained on open_clip ViT-B-32 (GELU) embeddings of "
                  "OpenAI's weights; the pool's stored features come from the QuickGELU model, so scores differ "
                  "slightly from the released pipeline's (flyt.md trap 12)", stacklevel=2)
    return head


def load_released_mixer(path: Path, k: int) -> Mixer:
    """The mixing weights of a released M-FLYT checkpoint (``mflyt.pt``: ``layers.0.weight`` (1, k), bias)."""
    state = read_state_dict(path)
    mixer = Mixer(k)
    try:
        mixer.load_state_dict({key: state[key] for key in ("layers.0.weight", "layers.0.bias")})
    except KeyError as exc:
        raise PluginError(f"{path}: no M-FLYT mixing weights ({exc} missing)") from None
    except RuntimeError as exc:
        raise PluginError(f"{path}: mixing weights do not fit {k} inputs ({exc})") from None
    return mixer
