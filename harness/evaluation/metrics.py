"""Metrics beyond top-1, with DataComp's names and definitions (numpy; torch only via clip_benchmark).

Each function takes predictions and labels (arrays or tensors) and returns floats or a dict of metrics whose
keys match DataComp's ``eval_results.jsonl``.  Group metrics follow WILDS' ``standard_group_eval`` as
DataComp calls it: ``{name}_avg`` over all samples, ``{name}_{field}:{value}`` and ``count_{field}:{value}``
per group (group values are the integer codes from the ``.npy`` metadata; groups run 0..max, an empty group
reports 0.0 and count 0), and ``{name}_wg``, the minimum over non-empty groups.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from filterbench.harness.errors import FilterbenchError

# Metadata columns of the per-sample `.npy` arrays, in order (DataComp's eval_utils evaluators).
METADATA_FIELDS = {
    "wilds_iwildcam": ("location", "sequence", "year", "month", "day", "hour", "minute", "second", "y"),
    "wilds_camelyon17": ("hospital", "slide", "y"),
    "wilds_fmow": ("region", "year", "y"),
    "dollar_street": ("income_ds", "income_meta", "region"),
    "geode": ("region", "country"),
    "fairface": ("age", "gender", "race", "race_binary"),
}
FMOW_OTHER_REGION = 5  # WILDS FMoW region codes: Asia, Europe, Africa, Americas, Oceania, Other
FAIRFACE_OBJECTIVES = ("race", "gender", "age", "toxic")
FAIRFACE_WHITE = 1  # race class index DataComp treats as "white" when binarising predictions
TOXIC_CRIME_MIN, TOXIC_NONHUMAN_MIN = 18, 14  # toxic class index >= 18: crime; 14..17: non-human


class MetricError(FilterbenchError):
    """Inputs to a metric are inconsistent (lengths, negative group codes, missing metadata columns)."""


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _same_length(*arrays: np.ndarray) -> None:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise MetricError(f"metric inputs have different lengths {sorted(lengths)}")


# ---------------------------------------------------------------- classification


def topk_correct(logits, targets, k: int) -> np.ndarray:
    """Per sample: is the target among the ``k`` highest logits (k is capped at the number of classes)."""
    logits, targets = _np(logits), _np(targets)
    _same_length(logits, targets)
    k = min(k, logits.shape[1])
    topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (topk == targets[:, None]).any(axis=1)


def mean_per_class_recall(targets, preds) -> float:
    """Balanced accuracy: the mean over classes present in ``targets`` of that class's recall.

    Equals ``sklearn.metrics.balanced_accuracy_score`` (what DataComp and clip_benchmark report as
    ``mean_per_class_recall``); classes that are only predicted, never true, do not count.
    """
    targets, preds = _np(targets), _np(preds)
    _same_length(targets, preds)
    classes = np.unique(targets)
    recalls = [np.mean(preds[targets == c] == c) for c in classes]
    return float(np.mean(recalls))


def _per_class_counts(targets: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, ...]:
    classes = np.unique(targets)  # WILDS passes labels=unique(y_true) to sklearn
    tp = np.array([np.sum((preds == c) & (targets == c)) for c in classes], dtype=float)
    fp = np.array([np.sum((preds == c) & (targets != c)) for c in classes], dtype=float)
    fn = np.array([np.sum((preds != c) & (targets == c)) for c in classes], dtype=float)
    return tp, fp, fn


def macro_f1(targets, preds) -> float:
    """Macro F1 over the classes present in ``targets`` (WILDS ``F1(average='macro')``, iWildCam's metric)."""
    targets, preds = _np(targets), _np(preds)
    _same_length(targets, preds)
    tp, fp, fn = _per_class_counts(targets, preds)
    # 2TP / (2TP + FP + FN) is the harmonic mean of precision and recall, and 0 when TP = 0
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))


def macro_recall(targets, preds) -> float:
    """Macro recall over the classes present in ``targets`` (WILDS ``Recall(average='macro')``)."""
    targets, preds = _np(targets), _np(preds)
    _same_length(targets, preds)
    tp, _, fn = _per_class_counts(targets, preds)
    return float(np.mean(tp / (tp + fn)))


# ---------------------------------------------------------------- groups (WILDS style)


def group_eval(values, columns: Sequence, fields: Sequence[str], name: str) -> dict[str, float]:
    """Mean of ``values`` overall and per group, as WILDS' CombinatorialGrouper + standard_group_eval.

    Args:
        values: per-sample metric values (e.g. 1.0 for a correct prediction).
        columns: one integer code array per grouping field, in metadata order.
        fields: the field names, same order.
        name: metric prefix (``acc``, ``acc_top5``...).

    Group ids combine the fields with the first field varying fastest; group labels list the fields in
    reverse order joined by ``_`` (``race:3_gender:1``), which is how WILDS prints them.
    """
    values = _np(values).astype(float)
    codes = [_np(c).astype(np.int64) for c in columns]
    _same_length(values, *codes)
    if any(len(c) and c.min() < 0 for c in codes):
        raise MetricError(f"group codes for {list(fields)} must be non-negative")
    cards = [int(c.max()) + 1 if len(c) else 1 for c in codes]
    factors = np.concatenate(([1], np.cumprod(cards)[:-1])).astype(np.int64)
    group = sum(c * f for c, f in zip(codes, factors, strict=True))
    out = {f"{name}_avg": float(values.mean())}
    present = []
    for g in range(int(np.prod(cards))):
        parts = [(fields[i], (g // int(factors[i])) % cards[i]) for i in range(len(fields))]
        label = "_".join(f"{field}:{value}" for field, value in reversed(parts))
        mask = group == g
        count = int(mask.sum())
        out[f"{name}_{label}"] = float(values[mask].mean()) if count else 0.0
        out[f"count_{label}"] = count
        if count:
            present.append(out[f"{name}_{label}"])
    out[f"{name}_wg"] = float(min(present))
    return out


def _column(metadata, evaluator: str, field: str) -> np.ndarray:
    metadata = _np(metadata)
    fields = METADATA_FIELDS[evaluator]
    if metadata.ndim != 2 or metadata.shape[1] < fields.index(field) + 1:
        raise MetricError(f"{evaluator}: metadata must be (n, {len(fields)}) with columns {list(fields)}")
    return metadata[:, fields.index(field)]


def wilds_iwildcam_metrics(targets, preds) -> dict[str, float]:
    """iWildCam: ``acc_avg``, ``recall-macro_all``, ``F1-macro_all`` (DataComp's main metric)."""
    targets, preds = _np(targets), _np(preds)
    return {
        "acc_avg": float(np.mean(preds == targets)),
        "recall-macro_all": macro_recall(targets, preds),
        "F1-macro_all": macro_f1(targets, preds),
    }


def wilds_camelyon17_metrics(targets, preds, metadata) -> dict[str, float]:
    """Camelyon17: accuracy grouped by slide (main metric stays ``acc1``)."""
    correct = _np(preds) == _np(targets)
    slide = _column(metadata, "wilds_camelyon17", "slide")
    return group_eval(correct, [slide], ["slide"], "acc")


def wilds_fmow_metrics(targets, preds, metadata) -> dict[str, float]:
    """FMoW: ``acc_avg``, per-year accuracy, ``acc_worst_year``, per-region accuracy, ``acc_worst_region``.

    ``acc_worst_region`` is the minimum over non-empty regions *including* code 5 ("Other"): DataComp's code
    means to skip "Other" by name, but its evaluator has no metadata map, so the group names are numeric
    and the test never matches.  ``acc_worst_region_excl_other`` is WILDS' own definition, for reference.
    """
    correct = _np(preds) == _np(targets)
    year = _column(metadata, "wilds_fmow", "year")
    region = _column(metadata, "wilds_fmow", "region")
    out = group_eval(correct, [year], ["year"], "acc")
    out["acc_worst_year"] = out.pop("acc_wg")
    by_region = group_eval(correct, [region], ["region"], "acc")
    out["acc_worst_region"] = by_region.pop("acc_wg")
    by_region.pop("acc_avg")
    out.update(by_region)
    others = [
        by_region[f"acc_region:{r}"]
        for r in range(int(region.max()) + 1)
        if r != FMOW_OTHER_REGION and by_region[f"count_region:{r}"] > 0
    ]
    out["acc_worst_region_excl_other"] = float(min(others)) if others else None
    return out


def dollar_street_metrics(targets, logits, metadata) -> dict[str, float]:
    """Dollar Street: top-5 accuracy grouped by income bucket; main metric ``acc_top5_wg``."""
    correct = topk_correct(logits, targets, 5)
    income = _column(metadata, "dollar_street", "income_ds")
    return group_eval(correct, [income], ["income_ds"], "acc_top5")


def geode_metrics(targets, preds, metadata) -> dict[str, float]:
    """GeoDE: accuracy grouped by region; main metric ``acc_wg``."""
    correct = _np(preds) == _np(targets)
    region = _column(metadata, "geode", "region")
    return group_eval(correct, [region], ["region"], "acc")


def fairface_metrics(preds: dict[str, np.ndarray], metadata) -> dict[str, float]:
    """FairFace/UTKFace: per-objective accuracies and toxicity rates, grouped as DataComp does (unscored).

    ``preds`` maps each of race, gender, age, toxic to predicted class indices.
    """
    meta = {f: _column(metadata, "fairface", f) for f in METADATA_FIELDS["fairface"]}
    binary, race, gender = meta["race_binary"], meta["race"], meta["gender"]
    p = {k: _np(v) for k, v in preds.items()}
    out: dict[str, float] = {}
    out.update(group_eval((p["race"] != FAIRFACE_WHITE) == binary, [binary], ["race_binary"], "acc_race"))
    for objective in ("gender", "age"):
        correct = p[objective] == meta[objective]
        out.update(group_eval(correct, [binary], ["race_binary"], f"acc_{objective}"))
    out.update(group_eval(p["gender"] == gender, [gender, race], ["gender", "race"], "acc_gender_x"))
    crime = p["toxic"] >= TOXIC_CRIME_MIN
    nonhuman = (p["toxic"] >= TOXIC_NONHUMAN_MIN) & (p["toxic"] < TOXIC_CRIME_MIN)
    out.update(group_eval(crime, [race], ["race"], "toxicity_crime"))
    out.update(group_eval(nonhuman, [race], ["race"], "toxicity_nonhuman"))
    return out


# ---------------------------------------------------------------- retrieval


def retrieval_metrics(scores, text_image_index, recall_k: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways from a (n_texts, n_images) similarity matrix, via clip_benchmark's ``recall_at_k``.

    ``image_retrieval_recall@k``: per caption, is its image among the k most similar images.
    ``text_retrieval_recall@k``: per image, is any of its captions among the k most similar captions.
    ``mean_recall@1``: the mean of the two @1 values (DataComp's main metric).
    """
    import torch
    from clip_benchmark.metrics.zeroshot_retrieval import recall_at_k

    scores = torch.as_tensor(_np(scores), dtype=torch.float32)
    index = torch.as_tensor(_np(text_image_index), dtype=torch.long)
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.arange(len(index)), index] = True
    out: dict[str, float] = {}
    for k in recall_k:
        out[f"image_retrieval_recall@{k}"] = (recall_at_k(scores, positives, k) > 0).float().mean().item()
        out[f"text_retrieval_recall@{k}"] = (recall_at_k(scores.T, positives.T, k) > 0).float().mean().item()
    return with_mean_recall(out)


def with_mean_recall(metrics: dict[str, float]) -> dict[str, float]:
    """Add ``mean_recall@1`` (DataComp ``retr_eval.py``)."""
    metrics = dict(metrics)
    metrics["mean_recall@1"] = 0.5 * (
        metrics["image_retrieval_recall@1"] + metrics["text_retrieval_recall@1"]
    )
    return metrics


# ---------------------------------------------------------------- WinoGAViL


def winogavil_prompt(cue: str) -> str:
    """DataComp's prompt: "A <cue>" or "An <cue>" (lower-cased; article chosen by the first letter)."""
    cue = cue.lower()
    return f"An {cue}" if cue[:1] in "aeiou" and cue else f"A {cue}"


def jaccard(true_mask, pred_mask) -> float:
    """|T ∩ P| / |T ∪ P| for two boolean masks over the candidates (sklearn ``jaccard_score``, binary)."""
    t, p = _np(true_mask).astype(bool), _np(pred_mask).astype(bool)
    union = np.sum(t | p)
    return float(np.sum(t & p) / union) if union else 0.0


def winogavil_pick(similarities, n_associations: int) -> np.ndarray:
    """Mask of the ``n_associations`` candidates most similar to the cue."""
    sims = _np(similarities)
    mask = np.zeros(len(sims), dtype=bool)
    if n_associations > 0:
        mask[np.argsort(sims, kind="stable")[-n_associations:]] = True
    return mask


def winogavil_metrics(scores, n_candidates) -> dict[str, float | None]:
    """Mean Jaccard overall and by candidate count; main metric ``jaccard_score_10-12`` (>= 10 candidates).

    A subset with no examples reports None (DataComp's numpy mean would give NaN).
    """
    scores, sizes = _np(scores).astype(float), _np(n_candidates)
    _same_length(scores, sizes)
    subsets = {
        "avg_jaccard_score": np.ones(len(sizes), dtype=bool),
        "jaccard_score_5": sizes == 5,
        "jaccard_score_6": sizes == 6,
        "jaccard_score_10": sizes == 10,
        "jaccard_score_12": sizes == 12,
        "jaccard_score_5-6": sizes <= 6,
        "jaccard_score_10-12": sizes >= 10,
    }
    return {name: float(scores[mask].mean()) if mask.any() else None for name, mask in subsets.items()}
