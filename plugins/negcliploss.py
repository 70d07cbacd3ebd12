"""Scorer ``negcliploss``: CLIP score minus the contrastive batch normaliser, averaged over random batches.

Card
    Paper: Wang et al. 2024, "CLIPLoss and Norm-Based Data Selection Methods for Multimodal Contrastive
        Learning" (arXiv 2405.19547, NeurIPS 2024; later versions call it s-CLIPLoss).
    Reference: ypwang61/negCLIPLoss_NormSim ``baselines/vas2.py`` (``cal_new_clip_score``, ``cs_new_helper``,
        ``load_uids_with_cs_new``); rewritten, not ported (it shuffles with unseeded ``torch.randperm`` and
        exponentiates without max subtraction, which overflows fp32 once a cosine exceeds ~0.887 at tau 0.01).
    Computation, per metadata shard (the harness hands the whole shard; ``batch_dependent``): with unit-norm
        image/text features f, g of one model, for k = 1..K draw a permutation of the shard's rows from
        ``ctx.rng`` (seeded from the score seed and the shard, so it is part of the artifact key and does not
        depend on the worker count), cut it into consecutive batches of ``batch_size`` rows, and in each
        batch B with S = F_B G_B^T:
            norm_img_i = tau/2 * logsumexp_j(S_ij / tau)   (image i against every text of B, its own included)
            norm_txt_i = tau/2 * logsumexp_j(S_ji / tau)   (text i against every image of B)
        averaged over the K batchings; ``score = cos(f_i, g_i) - (norm_img + norm_txt)``, i.e. -tau times the
        sample's symmetric InfoNCE loss in its batch.  Higher is better.
    Params: ``model`` (feature set: ``<model>_img``/``<model>_txt``; l14), ``batch_size`` (32768),
        ``num_batches`` (K, 10), ``temperature`` (tau, 0.01 for OpenAI CLIP), ``remainder``: ``short`` (the
        reference: the last batch of each permutation is short, which inflates its rows' scores) or ``merge``
        (the short tail joins the previous batch, so every batch has batch_size..2*batch_size-1 rows).  All
        are part of the key.
    Outputs: ``score``, ``norm_img``, ``norm_txt`` (float32).
    Compute: O(K * rows * batch_size * d) per shard; the b x b matrix is built in row blocks (memory
        O(block * b)); torch on ``ctx.device`` (CUDA when the harness provides it, else CPU, fp32).
    Checks: tests/plugins/test_negcliploss.py (known answers recomputed in the test, worker-count invariance,
        seed dependence, stability at tau -> 0).
    Versions: 1 - first release.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pydantic

from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, StageContext
from filterbench.harness.hookspecs import hookimpl

#: rows of S processed at once: bounds memory at BLOCK_ROWS * batch_size floats
BLOCK_ROWS = 4096


def batch_slices(order: np.ndarray, batch_size: int, remainder: str) -> list[np.ndarray]:
    """Cut a permutation into consecutive batches; ``merge`` folds a short tail into the previous batch."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if remainder == "merge" and len(batches) > 1 and len(batches[-1]) < batch_size:
        tail = batches.pop()
        batches[-1] = np.concatenate([batches[-1], tail])
    return batches


def logsumexp(x, dim: int):
    """log sum exp along ``dim``, max-subtracted, with exponents clamped at -80.

    Terms below e^-80 of the largest change the sum by under batch * e^-80 (relative), far below float32's
    resolution, so the clamp leaves results unchanged; it keeps ``exp`` out of float32's denormal range, where
    CPUs run it ~50x slower (at tau = 0.01 most of a batch lands there).
    """
    import torch

    top = x.amax(dim=dim, keepdim=True)
    summed = torch.exp((x - top).clamp_min(-80.0)).sum(dim=dim, keepdim=True)
    return (top + torch.log(summed)).squeeze(dim)


def batch_normalisers(image, text, temperature: float):
    """(tau/2 * row logsumexp, tau/2 * column logsumexp) of S = image @ text.T / tau, built in row blocks.

    ``image`` and ``text`` are torch tensors (b, d) on one device.  Column sums are merged across blocks with
    logaddexp, so no b x b matrix is ever held whole.
    """
    import torch

    rows = torch.empty(len(image), dtype=image.dtype, device=image.device)
    cols = torch.full((len(text),), float("-inf"), dtype=image.dtype, device=image.device)
    for start in range(0, len(image), BLOCK_ROWS):
        block = image[start:start + BLOCK_ROWS] @ text.T / temperature
        rows[start:start + len(block)] = logsumexp(block, dim=1)
        cols = torch.logaddexp(cols, logsumexp(block, dim=0))
    return rows * (temperature / 2), cols * (temperature / 2)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class NegClipLossScorer(Scorer):
    """negCLIPLoss: CLIP score minus tau/2 (row + column) logsumexp over random in-shard batches."""

    name = "negcliploss"
    version = 1
    outputs = ("score", "norm_img", "norm_txt")
    batch_dependent = True

    class Params(Params):
        model: str = "l14"
        batch_size: int = pydantic.Field(default=32768, ge=2)
        num_batches: int = pydantic.Field(default=10, ge=1)
        temperature: float = pydantic.Field(default=0.01, gt=0.0)
        remainder: Literal["short", "merge"] = "short"

    @property
    def needs(self) -> Needs:
        return Needs(features=(f"{self.params.model}_img", f"{self.params.model}_txt"))

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        import torch

        p = self.params
        image = _unit(batch.features[f"{p.model}_img"])
        text = _unit(batch.features[f"{p.model}_txt"])
        use_cuda = ctx.device.startswith("cuda") and torch.cuda.is_available()
        device = torch.device("cuda" if use_cuda else "cpu")
        img, txt = torch.from_numpy(image).to(device), torch.from_numpy(text).to(device)
        n = len(batch)
        norm_img = torch.zeros(n, dtype=torch.float64, device=device)
        norm_txt = torch.zeros(n, dtype=torch.float64, device=device)
        with torch.no_grad():
            for _ in range(p.num_batches):
                for rows in batch_slices(ctx.rng.permutation(n), p.batch_size, p.remainder):
                    index = torch.from_numpy(rows).to(device)
                    r_img, r_txt = batch_normalisers(img[index], txt[index], p.temperature)
                    norm_img[index] += r_img.double()
                    norm_txt[index] += r_txt.double()
        norm_img = (norm_img / p.num_batches).cpu().numpy()
        norm_txt = (norm_txt / p.num_batches).cpu().numpy()
        cosine = np.einsum("ij,ij->i", image.astype(np.float64), text.astype(np.float64))
        return {"score": (cosine - norm_img - norm_txt).astype(np.float32),
                "norm_img": norm_img.astype(np.float32), "norm_txt": norm_txt.astype(np.float32)}


@hookimpl
def register_scorers(register):
    register(NegClipLossScorer)
