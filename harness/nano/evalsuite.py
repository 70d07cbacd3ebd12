"""The nano eval suite: task definitions and writing them in DataComp's webdataset eval layout.

Each task renders its own images from a fresh seed path (never shared with the pool or the reference sample),
with the attribute under test drawn uniformly and everything else drawn as in the world.  Sets are written with
the evaluation package's writers (``wds_<task>_test/``: classnames, templates, ``test/N.tar`` of lossless
``.webp`` + ``.cls``; retrieval sets with ``.txt`` captions).  The task list is ``tasklists/nano_v1.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from filterbench.harness.nano import captions as cap
from filterbench.harness.nano import render
from filterbench.harness.nano import scenes as sc
from filterbench.harness.nano.world import (
    BACKGROUND_PHRASES,
    BACKGROUNDS,
    COLOUR_NAMES,
    NOISY_STYLE,
    OBJECT_NAMES,
    POSITION_PHRASES,
    SIZES,
    STYLES,
    TEXTURES,
    UNUSUAL_BACKGROUNDS,
    NanoConfig,
    tail_classes,
)
from filterbench.harness.seeding import derive_rng

TASKLIST_PATH = Path(__file__).parent / "tasklists" / "nano_v1.yaml"
SHARD_SIZE = 512
OBJECT_TEMPLATES = ("a photo of a {c}.", "a picture of a {c}.", "a {c}.", "a drawing of a {c}.",
                    "a sketch of a {c}.")
ATTRIBUTE_TEMPLATES = ("a {c} object.", "a photo of a {c} thing.", "a {c} shape.")
PHRASE_TEMPLATES = ("an object {c}.", "a photo of a thing {c}.", "something {c}.")
COUNT_TEMPLATES = ("a photo of {c}.", "{c}.", "a picture of {c}.")
PHOTO_ONLY = (1.0, 0.0, 0.0)


@dataclass(frozen=True)
class EvalTask:
    """One nano eval task.

    Attributes:
        key: task key (``nano/objects``); its folder is ``wds_nano-objects_test``.
        label: the scene field that is the label (``cls``, ``colour``, ...); None for retrieval.
        classnames, templates: zero-shot prompts (``{c}`` placeholders), label i = classnames[i].
        fixed: scene fields pinned for every image (e.g. ``style``).
        classes: object classes to draw from (default: all in-distribution classes).
    """

    key: str
    label: str | None
    classnames: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    fixed: dict = field(default_factory=dict)
    classes: tuple[int, ...] = ()

    @property
    def retrieval(self) -> bool:
        return self.label is None


def _objects(key: str, **fixed) -> EvalTask:
    return EvalTask(key, "cls", OBJECT_NAMES, OBJECT_TEMPLATES, fixed)


TASKS: tuple[EvalTask, ...] = (
    _objects("nano/objects"),
    _objects("nano/objects_v2"),
    _objects("nano/objects_sketch", style=STYLES.index("sketch")),
    _objects("nano/objects_rendition", style=STYLES.index("cartoon")),
    _objects("nano/objects_noise", style=len(STYLES)),  # the eval-only "noisy" corruption
    _objects("nano/objects_background"),  # backgrounds replaced by UNUSUAL_BACKGROUNDS below
    EvalTask("nano/count", "count", ("one object", "two objects", "three objects"), COUNT_TEMPLATES),
    EvalTask("nano/position", "position", POSITION_PHRASES, PHRASE_TEMPLATES, {"count": 1}),
    EvalTask("nano/colour", "colour", COLOUR_NAMES, ATTRIBUTE_TEMPLATES, {"texture": 0}),
    EvalTask("nano/size", "size", SIZES, ATTRIBUTE_TEMPLATES, {"count": 1}),
    EvalTask("nano/texture", "texture", TEXTURES, ATTRIBUTE_TEMPLATES, {"count": 1}),
    EvalTask("nano/scene", "background", BACKGROUND_PHRASES, PHRASE_TEMPLATES),
    EvalTask("nano/retrieval", None),
    EvalTask("nano/longtail", "cls", tuple(OBJECT_NAMES[i] for i in tail_classes()), OBJECT_TEMPLATES,
             classes=tuple(tail_classes())),
)
assert NOISY_STYLE and len(UNUSUAL_BACKGROUNDS) == 3


def task(key: str) -> EvalTask:
    for t in TASKS:
        if t.key == key:
            return t
    raise KeyError(f"no nano eval task {key!r}")


def task_scenes(t: EvalTask, n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(scenes, labels) of a task: the label field is balanced over its classes."""
    labels = np.arange(n) % max(1, len(t.classnames))
    rng.shuffle(labels)
    style_p = PHOTO_ONLY if "style" not in t.fixed else None
    classes = None
    if t.label == "cls":
        pool = np.array(t.classes or range(len(OBJECT_NAMES)))
        classes = pool[labels]
    elif t.retrieval:
        classes = rng.integers(0, len(OBJECT_NAMES), size=n)
    kwargs = dict(t.fixed)
    if t.label not in (None, "cls"):
        kwargs[t.label] = labels + (1 if t.label == "count" else 0)
    if t.label == "position":
        kwargs["size"] = rng.integers(0, 2, size=n)  # positions are only legible for small/medium objects
    if t.label == "count":
        kwargs["count"] = labels + 1
    scenes = sc.sample_objects(rng, n, 0.0, classes=classes, style_p=style_p or PHOTO_ONLY, **kwargs)
    if t.key == "nano/objects_background":
        scenes["background"] = len(BACKGROUNDS) + rng.integers(0, len(UNUSUAL_BACKGROUNDS), size=n)
    if t.label == "cls":
        labels = labels.astype(np.int64)
    return scenes, labels


def write_task(root: Path, t: EvalTask, cfg: NanoConfig) -> dict:
    """Render and write one task's eval set under ``root``; returns a summary for the manifest."""
    from filterbench.harness.evaluation.evalsets import write_classification_evalset, write_retrieval_evalset
    from filterbench.harness.evaluation.tasklist import folder_name

    rng = derive_rng(cfg.seed, "eval", t.key)
    n = cfg.retrieval_size if t.retrieval else cfg.eval_size
    scenes, labels = task_scenes(t, n, rng)
    images = render.render(scenes, rng)
    folder = root / folder_name(t.key)
    if t.retrieval:
        texts = [[cap.full_caption({k: v[i] for k, v in scenes.items()}), c]
                 for i, c in enumerate(cap.clean_captions(rng, scenes))]
        write_retrieval_evalset(folder, list(images), texts, shard_size=SHARD_SIZE, overwrite=True)
    else:
        write_classification_evalset(folder, list(images), labels.tolist(), list(t.classnames),
                                     list(t.templates), shard_size=SHARD_SIZE, overwrite=True)
    folder.chmod(0o755)  # the writer builds in a mkdtemp folder (mode 0700): let other users read the set
    return {"folder": folder.name, "size": int(n), "classes": len(t.classnames) or None}


def write_suite(root: Path, cfg: NanoConfig) -> dict[str, dict]:
    """Every task of the suite under ``root``; returns key -> summary."""
    return {t.key: write_task(root, t, cfg) for t in TASKS}


def chance(t: EvalTask) -> float | None:
    """Accuracy of a random guess (None for retrieval, where it is 1 / set size)."""
    return None if t.retrieval else 1.0 / len(t.classnames)
