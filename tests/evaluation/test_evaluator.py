"""End to end: fabricated eval sets, a random-init tiny open_clip model on CPU, resume after interruptions."""

import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.evaluation import evalsets as ev
from filterbench.harness.evaluation.evaluator import evaluate_checkpoint, load_model
from filterbench.harness.evaluation.tasklist import load_tasklist

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ["red square", "green circle", "blue star", "grey cloud", "yellow sun"]
TEMPLATES = ["a photo of a {c}.", "a drawing of a {c}."]
COLORS = np.array([[220, 30, 30], [30, 200, 40], [40, 40, 230], [128, 128, 128], [240, 230, 20]])

TOY = """\
format: filterbench-tasklist/1
name: toy
version: 1
tasks:
  toy/shapes: {name: Shapes}
  toy/captions: {name: Captions, main_metric: mean_recall@1, evaluator: zeroshot_retrieval}
  toy/regions: {name: Regions, main_metric: acc_worst_region, evaluator: wilds_fmow}
  toy/income: {name: Income, main_metric: acc_top5_wg, evaluator: dollar_street}
  toy/assoc: {name: Assoc, main_metric: jaccard_score_10-12, evaluator: winogavil}
  toy/faces: {name: Faces, main_metric: null, evaluator: fairface}
groups:
  Objects: [toy/shapes, toy/regions]
average: {name: Average, expected_tasks: 5}
extras:
  toy/longtail: {name: Long tail}
"""


def _image(label, rng, size=16):
    noise = rng.integers(-40, 40, (size, size, 3))
    return np.clip(COLORS[label] + noise, 0, 255).astype(np.uint8)


def _briefly_fitted_model(images, labels, steps=5):
    """Random init plus a few contrastive steps: a pure random init predicts one class for every image,
    which would make the accuracy checks below vacuous."""
    from PIL import Image

    torch.manual_seed(123)
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-test")
    tokenizer = open_clip.get_tokenizer("tiny-test")
    pixels = torch.stack([preprocess(Image.fromarray(im)) for im in images])
    texts = tokenizer([f"a photo of a {CLASSES[y]}." for y in labels])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = open_clip.ClipLoss()
    model.train()
    for _ in range(steps):
        image_features, text_features, logit_scale = model(pixels, texts)[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registered tiny model, its checkpoint, and one folder holding every toy eval set."""
    root = tmp_path_factory.mktemp("eval")
    (root / "tiny-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(root / "tiny-test.json")
    rng = np.random.default_rng(0)
    labels = [i % 5 for i in range(40)]
    images = [_image(y, rng) for y in labels]
    torch.save({"state_dict": _briefly_fitted_model(images, labels).state_dict()}, root / "tiny.pt")
    sets = root / "evalsets"
    write = ev.write_classification_evalset
    write(sets / "wds_cifar10_test", images, labels, CLASSES, TEMPLATES, shard_size=20)
    write(sets / "wds_toy-shapes_test", images, labels, CLASSES, TEMPLATES, shard_size=20)
    write(sets / "wds_toy-longtail_test", images[:10], labels[:10], CLASSES, TEMPLATES)
    meta = [np.array([i % 6, i % 3, y]) for i, y in enumerate(labels)]
    write(sets / "wds_toy-regions_test", images, labels, CLASSES, TEMPLATES, shard_size=15, metadata=meta)
    write(
        sets / "wds_toy-income_test",
        images,
        labels,
        CLASSES,
        TEMPLATES,
        metadata=[np.array([i % 4, 0, 0]) for i in range(40)],
    )
    captions = [[f"a {CLASSES[y]}", f"picture number {i}"] for i, y in enumerate(labels[:12])]
    for folder in ("wds_retrieval-flickr_1k_test_image_text_retrieval_test", "wds_toy-captions_test"):
        ev.write_retrieval_evalset(sets / folder, images[:12], captions, shard_size=5)
    examples = [
        {"cue": CLASSES[i % 5], "images": images[i : i + (10 if i % 2 else 5)], "associations": [0, 3]}
        for i in range(6)
    ]
    ev.write_winogavil_evalset(sets / "wds_toy-assoc_test", examples)
    ff_names = (
        [f"race:r{i}" for i in range(7)]
        + ["gender:male", "gender:female"]
        + [f"age:a{i}" for i in range(9)]
        + [f"toxic:t{i}" for i in range(20)]
    )
    ff_templates = [f"{o}:a photo of a {{c}}" for o in ("race", "gender", "age", "toxic")]
    ff_meta = [np.array([i % 9, i % 2, i % 7, int(i % 7 != 1)]) for i in range(20)]
    write(sets / "wds_toy-faces_test", images[:20], [0] * 20, ff_names, ff_templates, metadata=ff_meta)
    (root / "toy_v1.yaml").write_text(TOY)
    return root


def _run(world, out, tasklist="datacomp_v1", **kw):
    return evaluate_checkpoint(
        "tiny-test", world / "tiny.pt", world / "evalsets", tasklist, out, batch_size=16, **kw
    )


def _lines(path):
    return path.read_text().splitlines()


def _independent_acc1(world):
    """Zero-shot accuracy recomputed with open_clip directly from the images (no clip_benchmark)."""
    bundle = load_model("tiny-test", world / "tiny.pt")
    with torch.no_grad():
        weights = []
        for name in CLASSES:
            text = F.normalize(
                bundle.model.encode_text(bundle.tokenizer([t.format(c=name) for t in TEMPLATES])), dim=-1
            )
            weights.append(F.normalize(text.mean(0), dim=-1))
        images, labels = [], []
        for _, files in ev.iter_samples(world / "evalsets" / "wds_cifar10_test"):
            images.append(bundle.preprocess(ev.decode_image(files["webp"])))
            labels.append(int(files["cls"]))
        feats = F.normalize(bundle.model.encode_image(torch.stack(images)), dim=-1)
        preds = (feats @ torch.stack(weights, 1)).argmax(1).numpy()
    labels = np.array(labels)
    recall = np.mean([np.mean(preds[labels == c] == c) for c in range(5)])
    return float(np.mean(preds == labels)), float(recall)


def _independent_recall_at_1(world):
    """Retrieval R@1 both ways by brute force over the model's embeddings of the flickr-folder samples."""
    bundle = load_model("tiny-test", world / "tiny.pt")
    images, captions, owner = [], [], []
    for i, (_, files) in enumerate(ev.iter_samples(world / "evalsets" / "wds_toy-captions_test")):
        images.append(bundle.preprocess(ev.decode_image(files["webp"])))
        for caption in files["txt"].decode().splitlines():
            captions.append(caption)
            owner.append(i)
    with torch.no_grad():
        img = F.normalize(bundle.model.encode_image(torch.stack(images)), dim=-1)
        txt = F.normalize(bundle.model.encode_text(bundle.tokenizer(captions)), dim=-1)
    scores = (txt @ img.T).numpy()
    owner = np.array(owner)
    image_r1 = np.mean(scores.argmax(1) == owner)
    text_r1 = np.mean([owner[scores[:, i].argmax()] == i for i in range(len(images))])
    return image_r1, text_r1


def test_datacomp_list_rows_resume_and_missing(world, tmp_path):
    run = _run(world, tmp_path)
    assert run.evaluated == ["cifar10", "retrieval/flickr_1k_test_image_text_retrieval"]
    assert len(run.missing_evalsets) == 38 and "imagenet1k" in run.missing_evalsets
    rows = [json.loads(line) for line in _lines(run.results_path)]
    cifar, flickr = rows
    assert cifar["key"] == "cifar10" and cifar["dataset"] == "CIFAR-10"
    acc1, recall = _independent_acc1(world)
    assert 0.3 < acc1 < 1.0  # predictions vary, so the comparison below means something
    assert cifar["metrics"]["acc1"] == pytest.approx(acc1, abs=1e-6)
    assert cifar["metrics"]["mean_per_class_recall"] == pytest.approx(recall, abs=1e-6)
    assert cifar["metrics"]["main_metric"] == cifar["metrics"]["acc1"]
    assert set(flickr["metrics"]) >= {"image_retrieval_recall@10", "text_retrieval_recall@1", "mean_recall@1"}
    assert flickr["metrics"]["main_metric"] == flickr["metrics"]["mean_recall@1"]
    image_r1, text_r1 = _independent_recall_at_1(world)
    assert flickr["metrics"]["image_retrieval_recall@1"] == pytest.approx(image_r1, abs=1e-6)
    assert flickr["metrics"]["text_retrieval_recall@1"] == pytest.approx(text_r1, abs=1e-6)
    summary = json.loads(run.summary_path.read_text())
    assert summary["n_present"] == 2 and "imagenet1k" in summary["missing_tasks"]
    assert summary["scores"]["Average"] is None
    assert summary["partial"]["Average"] == pytest.approx(
        (cifar["metrics"]["acc1"] + flickr["metrics"]["mean_recall@1"]) / 2
    )

    before = run.results_path.read_bytes()
    again = _run(world, tmp_path)
    assert again.evaluated == [] and len(again.reused) == 2 and run.results_path.read_bytes() == before

    # a deleted last line is recomputed, identically (evaluation is deterministic)
    run.results_path.write_text(_lines(run.results_path)[0] + "\n")
    again = _run(world, tmp_path)
    assert again.evaluated == ["retrieval/flickr_1k_test_image_text_retrieval"]
    assert run.results_path.read_bytes() == before


def test_truncated_last_line_is_rewritten(world, tmp_path):
    run = _run(world, tmp_path, tasks=["cifar10", "retrieval/flickr_1k_test_image_text_retrieval"])
    good = run.results_path.read_bytes()
    first, second = _lines(run.results_path)
    run.results_path.write_text(first + "\n" + second[: len(second) // 2])  # crash mid-write
    again = _run(world, tmp_path)
    assert again.evaluated == ["retrieval/flickr_1k_test_image_text_retrieval"]
    assert run.results_path.read_bytes() == good


def test_every_evaluator_kind_with_a_custom_tasklist(world, tmp_path):
    run = _run(world, tmp_path, tasklist=world / "toy_v1.yaml")
    assert run.evaluated == [
        "toy/shapes",
        "toy/captions",
        "toy/regions",
        "toy/income",
        "toy/assoc",
        "toy/faces",
        "toy/longtail",
    ]
    assert run.missing_evalsets == {}
    rows = {json.loads(line)["key"]: json.loads(line)["metrics"] for line in _lines(run.results_path)}
    assert rows["toy/captions"]["image_retrieval_recall@10"] is not None
    assert rows["toy/regions"]["main_metric"] == rows["toy/regions"]["acc_worst_region"]
    assert rows["toy/regions"]["count_region:5"] == 6 and rows["toy/regions"]["count_year:0"] == 14
    assert rows["toy/income"]["main_metric"] == rows["toy/income"]["acc_top5_wg"]
    assert rows["toy/assoc"]["main_metric"] == rows["toy/assoc"]["jaccard_score_10-12"] is not None
    assert rows["toy/faces"]["main_metric"] is None and "acc_gender_x_wg" in rows["toy/faces"]
    summary = run.summary
    assert (
        summary["complete"] and summary["tasklist"]["sha256"] == load_tasklist(world / "toy_v1.yaml").sha256
    )
    scored = [
        rows[k]["main_metric"]
        for k in ("toy/shapes", "toy/captions", "toy/regions", "toy/income", "toy/assoc")
    ]
    assert summary["scores"]["Average"] == pytest.approx(np.mean(scored), abs=1e-9)
    assert summary["scores"]["Objects"] == pytest.approx(np.mean(scored[0:3:2]), abs=1e-9)
    assert summary["extras"]["toy/longtail"]["main_metric"] == rows["toy/longtail"]["acc1"]
    # the shapes set holds the same data as cifar10: same numbers whatever the task's name
    acc1, _ = _independent_acc1(world)
    assert rows["toy/shapes"]["acc1"] == pytest.approx(acc1, abs=1e-6)


def test_bad_inputs_raise_one_line_errors(world, tmp_path):
    with pytest.raises(FilterbenchError, match="checkpoint not found: .*nope.pt"):
        evaluate_checkpoint(
            "tiny-test", world / "nope.pt", world / "evalsets", "datacomp_v1", tmp_path, tasks=["cifar10"]
        )
    with pytest.raises(FilterbenchError, match="unknown open_clip model 'no-such-model'"):
        evaluate_checkpoint(
            "no-such-model", world / "tiny.pt", world / "evalsets", "datacomp_v1", tmp_path, tasks=["cifar10"]
        )
    torch.save({"state_dict": {"visual.wrong": torch.zeros(1)}}, tmp_path / "wrong.pt")
    with pytest.raises(FilterbenchError, match="cannot load tiny-test from .*wrong.pt: RuntimeError") as info:
        evaluate_checkpoint(
            "tiny-test", tmp_path / "wrong.pt", world / "evalsets", "datacomp_v1", tmp_path, tasks=["cifar10"]
        )
    assert "\n" not in str(info.value)
    with pytest.raises(FilterbenchError, match="task 'imagenet22k' is not in task list"):
        _run(world, tmp_path, tasks=["imagenet22k"])


def test_tasks_on_worker_processes_write_the_same_results_file(world, tmp_path):
    from filterbench.harness.executor import LocalExecutor

    alone = _run(world, tmp_path / "alone")
    # forked: the workers inherit this module's tiny-test architecture; each loads the model once
    pooled = _run(world, tmp_path / "pooled", executor=LocalExecutor(2, start_method="fork"))
    assert (tmp_path / "pooled" / "eval_results.jsonl").read_bytes() == \
        (tmp_path / "alone" / "eval_results.jsonl").read_bytes()
    assert pooled.evaluated == alone.evaluated and pooled.summary == alone.summary
