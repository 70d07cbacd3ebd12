"""One runner per evaluator kind: (model, task, eval-set folder) -> metrics dict.

Zero-shot classification and retrieval go through clip_benchmark (its wds dataset builder, classifier
construction, classification loop and retrieval evaluation), as DataComp does.  WILDS and fairness tasks
add group metrics computed from the per-sample ``.npy`` metadata read in a second pass over the same
shards.  WinoGAViL and FairFace/UTKFace have no clip_benchmark counterpart and are read directly.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from filterbench.harness.evaluation import evalsets, metrics
from filterbench.harness.evaluation.tasklist import Task

RECALL_K = (1, 5, 10)  # DataComp's retr_eval.py


@dataclass
class ModelBundle:
    """An open_clip model ready for evaluation.

    Attributes:
        model: the CLIP model, in eval mode, on ``device``.
        preprocess: the eval image transform.
        tokenizer: the model's tokenizer.
        device: torch device string.
        batch_size: images per forward pass.
    """

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    device: str = "cpu"
    batch_size: int = 64

    @property
    def amp(self) -> bool:
        # DataComp builds text classifiers and runs retrieval under fp16 autocast on CUDA; on CPU autocast
        # would mean bf16, which changes numbers for no speed gain, so it stays off.
        return self.device.startswith("cuda")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # clip_benchmark builds WebDataset without an explicit shardshuffle; that warning is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _loader(dataset, batch_size: int) -> torch.utils.data.DataLoader:
    # num_workers=0: webdataset splits shards per worker and fails when a worker gets none (ecosystem trap 9)
    return torch.utils.data.DataLoader(
        dataset.batched(batch_size), batch_size=None, shuffle=False, num_workers=0
    )


def _wds(task: Task, folder: Path, bundle: ModelBundle, kind: str):
    from clip_benchmark.datasets.builder import build_dataset

    return build_dataset(
        "wds/" + task.key,
        root=str(folder),
        transform=bundle.preprocess,
        split="test",
        download=False,
        task=kind,
    )


def classify(
    bundle: ModelBundle, task: Task, folder: Path
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Zero-shot classification: (metrics with acc1/acc5/mean_per_class_recall, logits, targets)."""
    from clip_benchmark.metrics import zeroshot_classification as zsc

    with _quiet():
        dataset = _wds(task, folder, bundle, "zeroshot_classification")
        loader = _loader(dataset, bundle.batch_size)
        classifier = zsc.zero_shot_classifier(
            bundle.model, bundle.tokenizer, dataset.classes, dataset.templates, bundle.device, amp=bundle.amp
        )
        logits, targets = zsc.run_classification(bundle.model, classifier, loader, bundle.device, amp=False)
    n_classes = len(dataset.classes)
    # acc5 is undefined below 5 classes: DataComp reports None there (clip_benchmark gives NaN)
    acc1, acc5 = (
        zsc.accuracy(logits, targets, topk=(1, 5))
        if n_classes >= 5
        else (zsc.accuracy(logits, targets, topk=(1,))[0], None)
    )
    preds = logits.argmax(dim=1)
    result = {
        "acc1": acc1,
        "acc5": acc5,
        "mean_per_class_recall": metrics.mean_per_class_recall(targets, preds),
    }
    return result, logits, targets


def _metadata(folder: Path, targets: torch.Tensor) -> np.ndarray:
    labels, metadata = evalsets.read_labels_and_metadata(folder)
    # DataComp commented this check out; a silent misalignment would corrupt every group metric
    if len(labels) != len(targets) or not np.array_equal(labels, targets.numpy()):
        raise evalsets.EvalsetError(f"{folder}: .npy metadata pass does not line up with the labels")
    return metadata


def run_zeroshot_classification(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
    if evalsets.dataset_type(folder) == "multilabel":
        return _run_multilabel(bundle, task, folder)
    return classify(bundle, task, folder)[0]


def _run_multilabel(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
    from clip_benchmark.metrics import zeroshot_classification as zsc

    with _quiet():
        dataset = _wds(task, folder, bundle, "zeroshot_classification")
        return zsc.evaluate(
            bundle.model,
            _loader(dataset, bundle.batch_size),
            bundle.tokenizer,
            dataset.classes,
            dataset.templates,
            bundle.device,
            amp=bundle.amp,
        )


def _with_groups(group_fn: Callable, use_logits: bool = False):
    def run(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
        result, logits, targets = classify(bundle, task, folder)
        metadata = _metadata(folder, targets)
        predictions = logits if use_logits else logits.argmax(dim=1)
        result.update(group_fn(targets.numpy(), predictions.numpy(), metadata))
        return result

    return run


def run_wilds_iwildcam(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
    result, logits, targets = classify(bundle, task, folder)
    result.update(metrics.wilds_iwildcam_metrics(targets.numpy(), logits.argmax(dim=1).numpy()))
    return result


def run_zeroshot_retrieval(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
    """Recall@{1,5,10} both ways via clip_benchmark; k larger than the number of images is skipped."""
    from clip_benchmark.metrics import zeroshot_retrieval as zsr

    n_images = evalsets.count_samples(folder)
    ks = [k for k in RECALL_K if k <= n_images]  # torch.topk fails for k > n
    with _quiet():
        dataset = _wds(task, folder, bundle, "zeroshot_retrieval")
        result = zsr.evaluate(
            bundle.model,
            _loader(dataset, bundle.batch_size),
            bundle.tokenizer,
            bundle.device,
            amp=bundle.amp,
            recall_k_list=ks,
        )
    return metrics.with_mean_recall(result)


def _encode_images(bundle: ModelBundle, blobs: list[bytes]) -> torch.Tensor:
    batch = torch.stack([bundle.preprocess(evalsets.decode_image(b)) for b in blobs]).to(bundle.device)
    with torch.no_grad(), torch.autocast(bundle.device.split(":")[0], enabled=bundle.amp):
        return F.normalize(bundle.model.encode_image(batch), dim=-1).float()


def _candidate_images(files: dict[str, bytes]) -> list[bytes]:
    found = sorted(
        (int(m.group(1)), data) for ext, data in files.items() if (m := re.match(r"img(\d+)\.", ext))
    )
    return [data for _, data in found]


def run_winogavil(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
    """Per example: pick the k candidates closest to "A/An <cue>" (k = true count); score = Jaccard."""
    scores, sizes = [], []
    for _, files in evalsets.iter_samples(folder):
        info = evalsets.read_json(files["json"])
        images = _candidate_images(files)
        image_features = _encode_images(bundle, images)
        tokens = bundle.tokenizer([metrics.winogavil_prompt(info["cue"])]).to(bundle.device)
        with torch.no_grad(), torch.autocast(bundle.device.split(":")[0], enabled=bundle.amp):
            text_features = F.normalize(bundle.model.encode_text(tokens), dim=-1).float()
        sims = (text_features @ image_features.T).squeeze(0).cpu().numpy()
        truth = np.isin(np.arange(len(images)), info["associations"])
        scores.append(metrics.jaccard(truth, metrics.winogavil_pick(sims, int(truth.sum()))))
        sizes.append(len(images))
    return metrics.winogavil_metrics(scores, sizes)


def _split_objectives(lines: list[str], what: str, folder: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        objective, sep, value = line.partition(":")
        if not sep:
            raise evalsets.EvalsetError(f"{folder}: {what} line {line!r} is not 'objective:value'")
        out.setdefault(objective, []).append(value)
    missing = [o for o in metrics.FAIRFACE_OBJECTIVES if o not in out]
    if missing:
        raise evalsets.EvalsetError(f"{folder}: {what} lack objectives {missing}")
    return out


def _batched_samples(folder: Path, size: int) -> Iterator[list[dict[str, bytes]]]:
    batch: list[dict[str, bytes]] = []
    for _, files in evalsets.iter_samples(folder):
        batch.append(files)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_fairface(bundle: ModelBundle, task: Task, folder: Path) -> dict[str, Any]:
    """FairFace/UTKFace: one zero-shot classifier per objective ("objective:..." lines); unscored."""
    from clip_benchmark.metrics import zeroshot_classification as zsc

    names = _split_objectives(evalsets.read_lines(folder / "classnames.txt"), "classnames", folder)
    templates = _split_objectives(
        evalsets.read_lines(folder / "zeroshot_classification_templates.txt"), "templates", folder
    )
    classifiers = {
        o: zsc.zero_shot_classifier(
            bundle.model, bundle.tokenizer, names[o], templates[o], bundle.device, amp=bundle.amp
        ).float()
        for o in metrics.FAIRFACE_OBJECTIVES
    }
    preds: dict[str, list[np.ndarray]] = {o: [] for o in classifiers}
    metadata = []
    for batch in _batched_samples(folder, bundle.batch_size):
        features = _encode_images(bundle, [evalsets.first_image(f) for f in batch])
        for objective, weights in classifiers.items():
            preds[objective].append((features @ weights).argmax(dim=1).cpu().numpy())
        metadata.extend(evalsets.load_npy(f["npy"]) for f in batch)
    return metrics.fairface_metrics({o: np.concatenate(p) for o, p in preds.items()}, np.stack(metadata))


RUNNERS: dict[str, Callable[[ModelBundle, Task, Path], dict[str, Any]]] = {
    "zeroshot_classification": run_zeroshot_classification,
    "zeroshot_retrieval": run_zeroshot_retrieval,
    "winogavil": run_winogavil,
    "wilds_iwildcam": run_wilds_iwildcam,
    "wilds_camelyon17": _with_groups(metrics.wilds_camelyon17_metrics),
    "wilds_fmow": _with_groups(metrics.wilds_fmow_metrics),
    "dollar_street": _with_groups(metrics.dollar_street_metrics, use_logits=True),
    "geode": _with_groups(metrics.geode_metrics),
    "fairface": run_fairface,
}
