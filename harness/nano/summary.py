"""Composition statistics of a built pool (stored in the manifest, printed by ``filterbench nano info``)."""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano.world import NOISE_TYPES, OBJECT_NAMES


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores ``positive`` vs ``negative`` (Mann-Whitney, ties averaged)."""
    scores = np.concatenate([positive, negative]).astype(np.float64)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average rank within runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _scores(features: dict[str, np.ndarray], role: str) -> np.ndarray:
    # the parquet's score columns are cosines of the fp16 features; reproduce them exactly
    img = features[f"{role}_img"].astype(np.float16).astype(np.float64)
    txt = features[f"{role}_txt"].astype(np.float16).astype(np.float64)
    return (img * txt).sum(1) / (np.linalg.norm(img, axis=1) * np.linalg.norm(txt, axis=1))


def _top_share(scores: np.ndarray, noise: np.ndarray, fraction: float) -> dict[str, float]:
    """Share of each noise type among the best ``fraction`` of rows by score: what CLIP-score filtering keeps."""
    top = noise[np.argsort(-scores, kind="stable")[: int(round(fraction * len(scores)))]]
    return {t: round(float((top == t).mean()), 4) for t in NOISE_TYPES if (noise == t).any()}


def composition(oracle: dict[str, np.ndarray], features: dict[str, np.ndarray]) -> dict:
    """Counts per noise type, per concept decile and head/tail group, plus CLIP-score statistics."""
    noise = oracle["noise_type"]
    n = len(noise)
    out: dict = {"rows": int(n)}
    out["noise_types"] = {t: {"count": int((noise == t).sum()), "fraction": round(float((noise == t).mean()), 6)}
                          for t in NOISE_TYPES}
    obj = oracle["object_class"]
    out["concept_deciles"] = {
        str(d): {"count": int((oracle["concept_decile"] == d).sum()),
                 "clean": int(((oracle["concept_decile"] == d) & (noise == "clean")).sum()),
                 "classes": [OBJECT_NAMES[c] for c in range(len(OBJECT_NAMES)) if c * 10 // len(OBJECT_NAMES) == d]}
        for d in range(10)}
    out["head_tail"] = {g: int((oracle["head_tail"] == g).sum()) for g in ("head", "torso", "tail", "none")}
    out["classes"] = {OBJECT_NAMES[c]: int((obj == c).sum()) for c in range(len(OBJECT_NAMES))}
    out["caption_languages"] = {str(k): int(v) for k, v in zip(*np.unique(oracle["caption_lang"], return_counts=True))}
    out["small_image"] = int(oracle["small_image"].sum())
    out["extreme_aspect"] = int(oracle["extreme_aspect"].sum())
    out["exact_duplicates"] = int(((noise == "near_duplicate") & oracle["dup_exact"]).sum())
    out["with_text_drawn"] = int((oracle["text_drawn"] != "").sum())
    out["clip_scores"] = {}
    for role in ("b32", "l14"):
        scores = _scores(features, role)
        clean = scores[noise == "clean"]
        out["clip_scores"][role] = {
            "mean_by_noise_type": {t: round(float(scores[noise == t].mean()), 4) for t in NOISE_TYPES
                                   if (noise == t).any()},
            "auc_clean_vs": {t: round(roc_auc(clean, scores[noise == t]), 4) for t in NOISE_TYPES
                             if t != "clean" and (noise == t).any()},
            "top30_share": _top_share(scores, noise, 0.3),
        }
    return out
