"""Scorer ``normsim``: how close each pool image is to a target set of downstream images (NormSim).

Card
    Paper: Wang et al. 2024, "CLIPLoss and Norm-Based Data Selection Methods for Multimodal Contrastive
        Learning" (arXiv 2405.19547), NormSim_p; NormSim_2 is the earlier VAS (Wang et al. 2024,
        arXiv 2402.02055).
    Reference: ypwang61/negCLIPLoss_NormSim ``baselines/vas2.py`` (``cal_similarity_scores_norm``,
        ``get_proxy_embeddings``, ``get_vas_gpu``).
    Definition: with unit-norm image features f_i of the pool and t_j of the M targets, both from one model,
        NormSim_p(i) = (sum_j |f_i . t_j|^p)^(1/p); no division by M (ranking is unaffected).
        ``norm_inf`` = max_j |f_i . t_j| (the absolute value, as the reference's torch p-norm takes it: a
            strongly negative cosine can win), searched with faiss as max(best IP of f_i, best IP of -f_i);
        ``norm_2`` = sqrt(f_i^T (T^T T) f_i), exact, from the d x d Gram matrix (O(d^2) per row).
    Targets: a declared input, see ``filterbench.harness.targets``.  The default ``imagenet_train`` is the
        ImageNet-1k-train role: the pool's own ``targets/imagenet_train.npz`` when it ships one (the nano
        world: its downstream training set embedded with the pool's reference model), else DataComp's OpenAI
        L/14 ImageNet-1k train features (``datacomp_in1k_l14``, the paper's ``imagenet_1k`` option).  Any
        .npy/.npz/.pt file or folder works too (the paper's main "target24": image features of the downstream
        tasks' training splits).  An npz is read under the pool's feature name (``<model>_img``).
    Params: ``model`` (l14), ``target``, ``target_sha256`` (optional pin: fit fails when the content differs),
        ``index`` (faiss factory string with inner-product metric: ``Flat`` is exact brute force on CPU or
        GPU; ``IVF4096,Flat`` or ``HNSW32`` scale further at the price of an approximate max, a lower bound),
        ``nprobe`` (IVF) and ``ef_search`` (HNSW).
    Fit: resolves the target, normalises its rows, builds the index and the Gram matrix once, writes them to
        ``fit/`` with ``target.json`` (source, rows, dim, sha256); workers load them in ``setup``.
    Outputs: ``norm_inf``, ``norm_2`` (float32).  Selection: ``chain`` sampler (recipe
        ``baselines/negcliploss_normsim.yaml``: negCLIPLoss top 30% then NormSim_inf to 20% of the pool).
    Cost: N*M*d for norm_inf (ImageNet-1k train at medium is ~2.5e20 FLOP with a flat index; restrict the
        target, use IVF, or a GPU); N*d^2 for norm_2.
    Checks: tests/plugins/test_normsim.py (both columns against brute force on small sets, absolute value,
        target formats, pinned digest).
    Versions: 1 - first release.
"""

from __future__ import annotations

import json

import numpy as np
import pydantic

from filterbench.harness.contract import Needs, Params, PoolBatch, Scorer, StageContext
from filterbench.harness.errors import PluginError
from filterbench.harness.hookspecs import hookimpl
from filterbench.harness.seeding import derive_int_seed
from filterbench.harness.targets import resolve_pinned_target
from filterbench.plugins._faiss import faiss_module, max_inner_product, to_device


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class NormSimScorer(Scorer):
    """NormSim_inf (nearest target, absolute cosine) and NormSim_2 of each pool image against a target set."""

    name = "normsim"
    version = 1
    outputs = ("norm_inf", "norm_2")

    class Params(Params):
        model: str = "l14"
        target: str = "imagenet_train"
        target_sha256: str | None = None
        index: str = "Flat"
        nprobe: int = pydantic.Field(default=16, ge=1)
        ef_search: int = pydantic.Field(default=128, ge=1)

    @property
    def needs(self) -> Needs:
        return Needs(features=(f"{self.params.model}_img",))

    def fit(self, pool, ctx: StageContext) -> None:
        p = self.params
        target = resolve_pinned_target(p.target, f"{p.model}_img", pool.root, p.target_sha256, "normsim")
        vectors = target.normalized()
        faiss = faiss_module()
        index = faiss.index_factory(vectors.shape[1], p.index, faiss.METRIC_INNER_PRODUCT)
        ivf = _ivf(index)
        if ivf is not None:
            ivf.cp.seed = derive_int_seed(ctx.seed, "fit", self.name, "ivf")
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        faiss.write_index(index, str(ctx.state_dir / "targets.index"))
        vectors64 = vectors.astype(np.float64)
        np.save(ctx.state_dir / "gram.npy", vectors64.T @ vectors64)
        record = {"spec": p.target, **target.describe()}
        (ctx.state_dir / "target.json").write_text(json.dumps(record, indent=1))
        ctx.stat("target_rows", len(vectors))

    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_loaded_from", None) == ctx.state_dir:
            return
        faiss = faiss_module()
        index = faiss.read_index(str(ctx.state_dir / "targets.index"))
        ivf = _ivf(index)
        if ivf is not None:
            ivf.nprobe = self.params.nprobe
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.params.ef_search
        self._index, self._gram = to_device(index), np.load(ctx.state_dir / "gram.npy")
        self._loaded_from = ctx.state_dir

    def score_batch(self, batch: PoolBatch, ctx: StageContext) -> dict[str, np.ndarray]:
        features = unit_rows(batch.features[f"{self.params.model}_img"])
        if features.shape[1] != self._gram.shape[0]:
            raise PluginError(f"normsim: pool features {self.params.model}_img have dim {features.shape[1]}, "
                              f"target {self.params.target!r} has dim {self._gram.shape[0]} "
                              "(pool and target must come from one model)")
        # max_j |f.t_j| = max(max_j f.t_j, max_j (-f).t_j); an approximate index may find nothing (label -1)
        best = [np.where(ids >= 0, sims, -np.inf) for sims, ids in
                (max_inner_product(self._index, features), max_inner_product(self._index, -features))]
        f64 = features.astype(np.float64)
        squared = np.einsum("ij,jk,ik->i", f64, self._gram, f64)
        return {"norm_inf": np.maximum(np.maximum(*best), 0.0).astype(np.float32),
                "norm_2": np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)}


def _ivf(index):
    """The IVF layer of ``index``, or None."""
    faiss = faiss_module()
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


@hookimpl
def register_scorers(register):
    register(NormSimScorer)
