"""The phases of a nano build, in order, each timed: reference sample and models, pool + oracle, eval suite,
auxiliary sets, reference zero-shot accuracy.  :func:`run` returns the manifest (no timings: the manifest is
part of the world's bytes, which must not depend on how fast the machine was).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from filterbench.harness.nano import auxsets, evalsuite, noise, poolgen, refeval, refjob, refmodels, render
from filterbench.harness.nano import captions as cap
from filterbench.harness.nano import scenes as sc
from filterbench.harness.nano.summary import composition
from filterbench.harness.nano.world import POSITIONS, NanoConfig
from filterbench.harness.seeding import derive_rng

REF_STYLE_P = (0.7, 0.15, 0.15)  # the teacher's curated data holds more renditions than the web pool
REF_FULL_CAPTION_P = 0.5
REF_CANONICAL_P = 0.35
REF_SIGN_P = 0.15  # signs captioned with their words: the web data real CLIPs learn to read from
CLIP_ROLES = ("b32", "l14")
ROLES = refjob.ROLES


@contextmanager
def _phase(log: Callable[[str], None], name: str):
    start = time.perf_counter()
    log(f"[nano] {name} ...")
    yield
    log(f"[nano] {name}: {time.perf_counter() - start:.1f} s")


def reference_sample(cfg: NanoConfig) -> dict:
    """The independent clean sample the reference models learn from (flatter class law, no noise).

    Returns ``images`` (decoded JPEG pixels), ``texts``, ``labels`` (ground truth per attribute head) and
    ``text_labels`` (the attributes each caption states, -1 where it states none).  A share of the sample are
    signs captioned with their words, so the teachers learn to read as web-trained CLIPs do (their reading
    heads: a sign's class and colour are the ones its words name).
    """
    rng = derive_rng(cfg.seed, "reference_sample")
    scenes = sc.sample_objects(rng, cfg.ref_pool, cfg.ref_zipf, style_p=REF_STYLE_P)
    # canonical views (one large, centred, plain photo object) make silhouettes learnable in few steps
    canonical = rng.random(cfg.ref_pool) < REF_CANONICAL_P
    # the teacher's data shows positions evenly: the pool's centre bias would leave the position words weak
    scenes["position"] = rng.integers(0, len(POSITIONS), size=cfg.ref_pool)
    sc.legalise(scenes)
    for name, value in (("count", 1), ("size", 2), ("position", 0), ("texture", 0), ("style", 0)):
        scenes[name][canonical] = value
    labelled = rng.random(cfg.ref_pool) < noise.LABEL_TEXT_P
    scenes["text"][labelled] = cap.text_label(sc.take(scenes, labelled), with_colour=False)
    signs = np.flatnonzero(rng.random(cfg.ref_pool) < REF_SIGN_P)
    for name, column in sc.sample_signs(rng, sc.take(scenes, signs)).items():
        scenes[name][signs] = column
    # curated alt-text: half of the captions state every attribute (the teacher must know them all)
    full = (rng.random(cfg.ref_pool) < REF_FULL_CAPTION_P) & (scenes["kind"] == sc.KIND_OBJECT)
    texts = [cap.full_caption({k: v[i] for k, v in scenes.items()}) if full[i] else c
             for i, c in enumerate(cap.clean_captions(rng, scenes))]
    for row, caption in zip(signs, cap.parrot(rng, scenes["text"][signs])):
        texts[row] = caption
    pixels = poolgen.decode_jpegs(poolgen.encode_jpegs(render.render(scenes, rng)))
    labels = attribute_labels(scenes)
    text_labels = {k: np.where(full, v, -1) for k, v in labels.items()}
    text_labels["cls"] = cap.named_class(texts)
    text_labels["colour"][signs] = scenes["colour"][signs]
    text_labels["size"][scenes["count"] > 1] = -1  # full captions state a size for single objects only
    return {"images": pixels, "texts": texts, "labels": labels, "text_labels": text_labels}


def attribute_labels(scenes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ground truth per head; -1 where the image does not show it (no colour or scene in sketches).

    A sign shows only words: its class and colour are the ones it names (what reading gives), the rest is void.
    """
    photo, sketch = scenes["style"] == 0, scenes["style"] == 2
    shown = scenes["kind"] == sc.KIND_OBJECT
    labels = {"cls": scenes["cls"].copy(), "colour": np.where(sketch, -1, scenes["colour"]),
              "count": scenes["count"] - 1, "position": scenes["position"].copy(), "size": scenes["size"].copy(),
              "texture": scenes["texture"].copy(), "background": np.where(photo, scenes["background"], -1)}
    for name in ("count", "position", "size", "texture", "background"):
        labels[name][~shown] = -1
    return labels


def load_models(models_dir: Path, cfg: NanoConfig) -> dict:
    return {role: refmodels.load_reference(cfg.ref(role).model, models_dir / f"{cfg.ref(role).model}.pt")
            for role in ROLES}


def embedders(models: dict):
    """(image embedder, text embedder) producing the npz arrays of every role.

    Roles run in parallel threads: each forward pass runs single-threaded and releases the GIL, so two cores
    embed two roles at once, and every array is computed exactly as it would be alone.
    """
    def parallel(jobs: dict) -> dict[str, np.ndarray]:
        with ThreadPoolExecutor(max_workers=refjob.workers()) as pool:
            futures = {name: pool.submit(fn, *args) for name, (fn, *args) in jobs.items()}
            return {name: future.result() for name, future in futures.items()}

    def images(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return parallel({f"{role}_img": (refmodels.embed_images, models[role][0], pixels)
                         for role in ("l14", "b32", "dino")})

    def texts(captions: list[str]) -> dict[str, np.ndarray]:
        return parallel({f"{role}_txt": (refmodels.embed_texts, models[role][0], models[role][2], captions)
                         for role in ("l14", "b32")})

    return images, texts


def render_pool(cfg: NanoConfig) -> dict:
    """Compose and render the pool (no model needed): scenes, captions, JPEGs, sizes, uids, oracle columns."""
    pool = noise.compose_pool(cfg)
    images = render.render(pool["scenes"], derive_rng(cfg.seed, "pool", "render"))
    images = noise.perturb_copies(images, pool["dup_source"], pool["oracle"]["dup_exact"],
                                  derive_rng(cfg.seed, "pool", "copies"))
    pool["jpegs"] = poolgen.encode_jpegs(images)
    pool["pixels"] = poolgen.decode_jpegs(pool["jpegs"])  # features see what every reader of the tars sees
    width, height, small, extreme = poolgen.original_sizes(cfg, "pool", pool["oracle"]["noise_type"])
    pool.update(uid=poolgen.make_uids(cfg, "pool", cfg.pool_size), width=width, height=height)
    pool["oracle"].update(small_image=small, extreme_aspect=extreme)
    return pool


def write_pool(root: Path, cfg: NanoConfig, pool: dict, models: dict) -> dict:
    """Embed the rendered pool with the reference models and write it; returns the composition summary."""
    embed_images, embed_texts = embedders(models)
    features = {**embed_images(pool["pixels"]), **embed_texts(pool["captions"])}
    features = {key: features[key] for key in sorted(features)}  # npz member order must not depend on timing
    poolgen.write_pool(root, cfg, pool, pool["jpegs"], features)
    return composition(pool["oracle"], features)


def run(root: Path, cfg: NanoConfig, log: Callable[[str], None]) -> dict:
    """Every phase of a build into ``root``; returns the manifest."""
    from filterbench.harness.pool import Pool
    from filterbench.harness.poolcheck import check_pool

    manifest: dict = {"config": cfg.as_dict()}
    with _phase(log, "reference sample"):
        sample = reference_sample(cfg)
    with _phase(log, f"reference models ({refjob.workers()} processes), meanwhile pool rendering and eval suite"):
        training = refjob.TrainingJobs(root / "models", cfg, sample)
        pool = render_pool(cfg)
        manifest["evalsets"] = evalsuite.write_suite(root / "evalsets", cfg)
        manifest["reference_training"] = training.join()
    models = load_models(root / "models", cfg)
    with _phase(log, "pool features, pool and oracle files"):
        manifest["composition"] = write_pool(root, cfg, pool, models)
        manifest["pool_check"] = check_pool(Pool(root / "pool"), deep=True)
    embed_images, embed_texts = embedders(models)
    with _phase(log, "auxiliary sets"):
        auxsets.write_concepts(root / "concepts.txt")
        manifest["aux"] = {"hq": auxsets.write_hq(root / "aux", cfg, embed_images, embed_texts),
                           **auxsets.write_labelled(root / "aux", cfg, embed_images)}
    with _phase(log, "reference zero-shot"):
        checkpoints = {role: (cfg.ref(role).model, root / "models" / f"{cfg.ref(role).model}.pt")
                       for role in CLIP_ROLES}
        manifest["zero_shot"] = refeval.evaluate_references(checkpoints, root / "evalsets", refjob.workers())
    manifest["models"] = {role: {"name": cfg.ref(role).model, "file": f"models/{cfg.ref(role).model}.pt"}
                          for role in ROLES}
    return manifest
