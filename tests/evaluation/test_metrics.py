"""Each metric against an independent computation on fabricated predictions."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from filterbench.harness.evaluation import metrics
from filterbench.harness.evaluation.patches import apply_clip_benchmark_patches, topk_accuracy

RNG = np.random.default_rng(7)


def _labels(n=300, classes=12):
    targets = RNG.integers(0, classes, n)
    # predictions right ~40% of the time, plus a class (classes + 3) that never occurs in the targets
    preds = np.where(RNG.random(n) < 0.4, targets, RNG.integers(0, classes + 4, n))
    return targets, preds


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_mean_per_class_recall():
    targets, preds = _labels()
    by_hand = np.mean([np.sum((preds == c) & (targets == c)) / np.sum(targets == c) for c in set(targets)])
    assert metrics.mean_per_class_recall(targets, preds) == pytest.approx(by_hand, abs=1e-12)
    assert metrics.mean_per_class_recall(targets, preds) == pytest.approx(
        balanced_accuracy_score(targets, preds), abs=1e-12
    )


def test_macro_f1_and_recall_over_true_classes():
    targets, preds = _labels()
    scores = []
    for c in np.unique(targets):
        tp = np.sum((preds == c) & (targets == c))
        precision = tp / np.sum(preds == c) if np.sum(preds == c) else 0.0
        recall = tp / np.sum(targets == c)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    assert metrics.macro_f1(targets, preds) == pytest.approx(np.mean(scores), abs=1e-12)
    labels = np.unique(targets)  # what WILDS passes
    assert metrics.macro_f1(targets, preds) == pytest.approx(
        f1_score(targets, preds, average="macro", labels=labels), abs=1e-12
    )
    assert metrics.macro_recall(targets, preds) == pytest.approx(
        recall_score(targets, preds, average="macro", labels=labels), abs=1e-12
    )
    out = metrics.wilds_iwildcam_metrics(targets, preds)
    assert out["F1-macro_all"] == metrics.macro_f1(targets, preds)
    assert out["acc_avg"] == pytest.approx(np.mean(targets == preds))


def test_topk_and_patched_clip_benchmark_accuracy():
    logits = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 8, (50,), generator=torch.Generator().manual_seed(1))
    in_top3 = [int(targets[i]) in torch.argsort(logits[i], descending=True)[:3].tolist() for i in range(50)]
    assert metrics.topk_correct(logits, targets, 3).tolist() == in_top3
    acc1, acc3 = topk_accuracy(logits, targets, topk=(1, 3))
    assert acc1 == pytest.approx(float(np.mean((logits.argmax(1) == targets).numpy())))
    assert acc3 == pytest.approx(np.mean(in_top3))
    apply_clip_benchmark_patches()
    from clip_benchmark.metrics import zeroshot_classification as zsc

    assert zsc.accuracy(logits, targets, topk=(1, 3)) == [acc1, acc3]  # upstream raises on numpy 2.4


def test_group_eval_single_field_with_empty_group():
    values = np.array([1, 0, 1, 1, 0, 0, 1], dtype=float)
    codes = np.array([0, 0, 2, 2, 2, 3, 3])  # code 1 never occurs
    out = metrics.group_eval(values, [codes], ["region"], "acc")
    assert out["acc_avg"] == pytest.approx(4 / 7)
    assert out["acc_region:0"] == 0.5 and out["count_region:0"] == 2
    assert out["acc_region:1"] == 0.0 and out["count_region:1"] == 0  # reported, not counted as worst
    assert out["acc_region:2"] == pytest.approx(2 / 3) and out["acc_region:3"] == 0.5
    assert out["acc_wg"] == 0.5


def test_group_eval_two_fields_like_wilds():
    gender = RNG.integers(0, 2, 200)
    race = RNG.integers(0, 3, 200)
    values = RNG.random(200) < 0.5
    out = metrics.group_eval(values, [gender, race], ["gender", "race"], "acc_gender_x")
    means = {}
    for g in range(2):
        for r in range(3):
            mask = (gender == g) & (race == r)
            means[(g, r)] = values[mask].mean()
            assert out[f"acc_gender_x_race:{r}_gender:{g}"] == pytest.approx(means[(g, r)])
            assert out[f"count_race:{r}_gender:{g}"] == mask.sum()
    assert out["acc_gender_x_wg"] == pytest.approx(min(means.values()))


def test_fmow_worst_region_includes_other_like_datacomp():
    n = 120
    region = np.arange(n) % 6
    year = np.arange(n) % 4
    targets = RNG.integers(0, 10, n)
    preds = targets.copy()
    preds[(region == 5) & (np.arange(n) % 12 != 5)] += 1  # "Other" (code 5) is the worst region
    preds[(region == 2) & (np.arange(n) < 30)] += 1
    meta = np.stack([region, year, targets], axis=1)
    out = metrics.wilds_fmow_metrics(targets, preds, meta)
    correct = preds == targets
    per_region = [correct[region == r].mean() for r in range(6)]
    per_year = [correct[year == y].mean() for y in range(4)]
    assert out["acc_worst_region"] == pytest.approx(min(per_region))
    assert out["acc_worst_region_excl_other"] == pytest.approx(min(per_region[:5]))
    assert out["acc_worst_year"] == pytest.approx(min(per_year))
    assert out["acc_avg"] == pytest.approx(correct.mean())
    assert "acc_wg" not in out


def test_dollar_street_worst_income_top5():
    n, classes = 160, 20
    logits = RNG.normal(size=(n, classes))
    targets = RNG.integers(0, classes, n)
    income = RNG.integers(0, 4, n)
    meta = np.stack([income, RNG.integers(0, 9, n), RNG.integers(0, 5, n)], axis=1)
    top5 = [targets[i] in np.argsort(-logits[i])[:5] for i in range(n)]
    groups = [np.mean([top5[i] for i in range(n) if income[i] == g]) for g in range(4)]
    out = metrics.dollar_street_metrics(targets, logits, meta)
    assert out["acc_top5_wg"] == pytest.approx(min(groups))
    assert out["acc_top5_avg"] == pytest.approx(np.mean(top5))


def test_geode_and_camelyon_worst_group():
    targets = RNG.integers(0, 5, 90)
    preds = np.where(RNG.random(90) < 0.6, targets, 0)
    region = RNG.integers(0, 6, 90)
    out = metrics.geode_metrics(targets, preds, np.stack([region, RNG.integers(0, 30, 90)], axis=1))
    assert out["acc_wg"] == pytest.approx(
        min((preds == targets)[region == r].mean() for r in np.unique(region))
    )
    slide = RNG.integers(0, 10, 90)
    cam = metrics.wilds_camelyon17_metrics(targets, preds, np.stack([slide // 2, slide, targets], axis=1))
    assert cam["acc_wg"] == pytest.approx(
        min((preds == targets)[slide == s].mean() for s in np.unique(slide))
    )


def test_metadata_shape_errors_are_clear():
    with pytest.raises(metrics.MetricError, match="wilds_fmow: metadata must be"):
        metrics.wilds_fmow_metrics([0, 1], [0, 1], np.zeros((2, 1)))


def test_retrieval_recall_both_directions_brute_force():
    n_images, per_image = 9, 3
    index = np.repeat(np.arange(n_images), per_image)
    scores = RNG.normal(size=(len(index), n_images))
    out = metrics.retrieval_metrics(scores, index, recall_k=(1, 5))
    for k in (1, 5):
        image_r = np.mean([index[t] in np.argsort(-scores[t])[:k] for t in range(len(index))])
        text_r = np.mean([any(index[t] == i for t in np.argsort(-scores[:, i])[:k]) for i in range(n_images)])
        assert out[f"image_retrieval_recall@{k}"] == pytest.approx(image_r, abs=1e-6)
        assert out[f"text_retrieval_recall@{k}"] == pytest.approx(text_r, abs=1e-6)
    assert out["mean_recall@1"] == pytest.approx(
        (out["image_retrieval_recall@1"] + out["text_retrieval_recall@1"]) / 2
    )


def test_winogavil_jaccard_and_subsets():
    assert metrics.winogavil_prompt("Apple") == "An apple"
    assert metrics.winogavil_prompt("Banana") == "A banana"
    truth = np.array([1, 0, 1, 0, 0], dtype=bool)
    sims = np.array([0.9, 0.8, 0.1, 0.0, -1.0])
    pred = metrics.winogavil_pick(sims, 2)
    assert pred.tolist() == [True, True, False, False, False]
    assert metrics.jaccard(truth, pred) == pytest.approx(len({0} & {0, 1}) / len({0, 2} | {0, 1}))
    scores = np.array([0.2, 0.4, 1.0, 0.5, 0.0, 0.25])
    sizes = np.array([5, 6, 10, 12, 10, 5])
    out = metrics.winogavil_metrics(scores, sizes)
    assert out["jaccard_score_10-12"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert out["jaccard_score_5-6"] == pytest.approx((0.2 + 0.4 + 0.25) / 3)
    assert out["jaccard_score_5"] == pytest.approx(0.225) and out["avg_jaccard_score"] == pytest.approx(
        np.mean(scores)
    )
    assert metrics.winogavil_metrics([0.5], [5])["jaccard_score_10-12"] is None


def test_fairface_objectives():
    n = 80
    meta = np.stack(
        [RNG.integers(0, 9, n), RNG.integers(0, 2, n), RNG.integers(0, 7, n), np.zeros(n, int)], 1
    )
    meta[:, 3] = (meta[:, 2] != 1).astype(int)
    preds = {
        "race": RNG.integers(0, 7, n),
        "gender": RNG.integers(0, 2, n),
        "age": RNG.integers(0, 9, n),
        "toxic": RNG.integers(0, 20, n),
    }
    out = metrics.fairface_metrics(preds, meta)
    assert out["acc_race_avg"] == pytest.approx(np.mean((preds["race"] != 1) == meta[:, 3]))
    assert out["acc_gender_avg"] == pytest.approx(np.mean(preds["gender"] == meta[:, 1]))
    assert out["toxicity_crime_avg"] == pytest.approx(np.mean(preds["toxic"] >= 18))
    assert out["toxicity_nonhuman_avg"] == pytest.approx(
        np.mean((preds["toxic"] >= 14) & (preds["toxic"] < 18))
    )
