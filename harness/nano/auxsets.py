"""Auxiliary sets in the roles the filtering methods need (none of them overlaps the pool or the eval sets).

- ``aux/hq``: a high-quality image-text set, the role of HQITP-135M / CC12M for DFN and binary quality
  classifiers.  Clean photos (and a few renditions) with fully specified captions, written in the pool layout
  (``metadata/*.parquet`` + ``.npz``, ``shards/*.tar``), so ``Pool(world.aux_dir / "hq")`` reads it.
- ``aux/downstream``: the labelled downstream training set, the role of ImageNet-1k train (FLYT, NormSim, the
  image-based clustering baseline): all in-distribution object classes, balanced, labelled.
- ``pool/targets/imagenet_train.npz`` and ``pool/targets/imagenet21k.txt``: the downstream embeddings and the
  concept vocabulary where recipes look for them pool-locally (``harness/targets.py``).
- ``aux/labelled/<task>``: labelled training sets for the structured tasks (count, position, colour, size,
  texture, scene), the role of the other DataComp downstream training sets.

Labelled sets use the eval layout with a ``train`` split (``classnames.txt``, templates, ``train/nshards.txt``,
``train/N.tar`` of ``.webp`` + ``.cls``), so clip_benchmark's ``build_dataset("wds/...", root, split="train")``
reads them; ``features.npz`` beside them holds ``labels`` and unit-norm fp16 ``b32_img``, ``l14_img``,
``dino_img`` for methods that only need embeddings.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from filterbench.harness.nano import captions as cap
from filterbench.harness.nano import evalsuite, poolgen, render
from filterbench.harness.nano import scenes as sc
from filterbench.harness.nano.world import OBJECTS, NanoConfig
from filterbench.harness.poolwrite import write_npz
from filterbench.harness.seeding import derive_rng

LABELLED_TASKS = ("nano/count", "nano/position", "nano/colour", "nano/size", "nano/texture", "nano/scene")
HQ_STYLE_P = (0.9, 0.05, 0.05)

#: embed(images uint8) -> {"b32_img": ..., "l14_img": ..., "dino_img": ...} and embed_text(captions) -> {..._txt}
ImageEmbedder = Callable[[np.ndarray], dict[str, np.ndarray]]
TextEmbedder = Callable[[list[str]], dict[str, np.ndarray]]


def write_hq(root: Path, cfg: NanoConfig, embed: ImageEmbedder, embed_text: TextEmbedder) -> dict:
    """The high-quality image-text set, in the pool layout."""
    rng = derive_rng(cfg.seed, "aux", "hq")
    scenes = sc.sample_objects(rng, cfg.hq_size, cfg.ref_zipf, style_p=HQ_STYLE_P)
    texts = [cap.full_caption({k: v[i] for k, v in scenes.items()}) if rng.random() < 0.5 else c
             for i, c in enumerate(cap.clean_captions(rng, scenes))]
    jpegs = poolgen.encode_jpegs(render.render(scenes, rng))
    pixels = poolgen.decode_jpegs(jpegs)
    width, height, _, _ = poolgen.original_sizes(cfg, "hq", np.full(cfg.hq_size, "clean"))
    table = {"uid": poolgen.make_uids(cfg, "hq", cfg.hq_size), "captions": texts, "width": width, "height": height}
    features = {**embed(pixels), **embed_text(texts)}
    shards = poolgen.shard_bounds(cfg, "hq", 1, cfg.hq_size)
    poolgen.write_pool_layout(root / "hq", shards, table, jpegs, features, cfg.rows_per_tar)
    return {"rows": cfg.hq_size, "layout": "pool"}


def _write_labelled(folder: Path, task: evalsuite.EvalTask, n: int, rng: np.random.Generator,
                    embed: ImageEmbedder) -> dict:
    """One labelled training set in the eval layout with a ``train`` split, plus ``features.npz``."""
    from filterbench.harness.evaluation.evalsets import write_classification_evalset

    scenes, labels = evalsuite.task_scenes(task, n, rng)
    images = render.render(scenes, rng)
    # the evaluation writer always names the split `test`; write there, then rename to `train`
    staging = folder.with_name(folder.name + ".staging")
    write_classification_evalset(staging, list(images), labels.tolist(), list(task.classnames),
                                 list(task.templates), shard_size=evalsuite.SHARD_SIZE, overwrite=True)
    (staging / "test").rename(staging / "train")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    folder.chmod(0o755)  # built in a mkdtemp folder (mode 0700)
    feats = {k: v.astype(np.float16) for k, v in embed(images).items()}
    write_npz(folder / "features.npz", {"labels": labels.astype(np.int64), **feats})
    return {"rows": int(n), "classes": len(task.classnames)}


def write_labelled(root: Path, cfg: NanoConfig, embed: ImageEmbedder) -> dict[str, dict]:
    """The downstream (ImageNet-train role) set and the per-task labelled training sets."""
    out = {"downstream": _write_labelled(root / "downstream", evalsuite.task("nano/objects"), cfg.downstream_size,
                                         derive_rng(cfg.seed, "aux", "downstream"), embed)}
    # ship the roles recipes name pool-locally (harness/targets.py): ImageNet-train embeddings, concept words
    targets = root.parent / "pool" / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "downstream" / "features.npz", targets / "imagenet_train.npz")
    shutil.copyfile(root.parent / "concepts.txt", targets / "imagenet21k.txt")
    for key in LABELLED_TASKS:
        name = key.split("/", 1)[1]
        out[f"labelled/{name}"] = _write_labelled(root / "labelled" / name, evalsuite.task(key), cfg.labelled_size,
                                                  derive_rng(cfg.seed, "aux", key), embed)
    return out


def write_concepts(path: Path) -> None:
    """The concept vocabulary: every in-distribution object name, singular and plural, one per line."""
    words = sorted({w for forms in OBJECTS for w in forms})
    header = "# nano world object concepts (the role of ImageNet-21k's synsets)\n"
    path.write_text(header + "".join(f"{w}\n" for w in words))
