"""Composing the pool: which rows are clean and which carry which noise, with their captions and ground truth.

:func:`compose_pool` returns the scene table to render, the captions, and the oracle columns; near-duplicates
are recorded as copies of clean source rows and made after rendering (:func:`perturb_copies`).  Each noise type
takes exactly its configured fraction of the pool; rows are shuffled so every shard holds every noise type.
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano import captions as cap
from filterbench.harness.nano import scenes as sc
from filterbench.harness.nano.world import (
    NOISE_TYPES,
    OBJECTS,
    OFF_CONCEPTS,
    NanoConfig,
    concept_deciles,
    head_tail,
    zipf_weights,
)
from filterbench.harness.seeding import derive_rng

LABEL_TEXT_P = 0.08  # clean photos that carry their own name as text (web images often do); T-MARS context


def _clean(rng, n, cfg):
    scenes = sc.sample_objects(rng, n, cfg.zipf)
    labelled = rng.random(n) < LABEL_TEXT_P
    scenes["text"][labelled] = cap.text_label(sc.take(scenes, labelled), with_colour=False)
    return scenes, cap.clean_captions(rng, scenes), scenes["cls"].copy()


def _misaligned(rng, n, cfg):
    scenes = sc.sample_objects(rng, n, cfg.zipf)
    own = cap.clean_captions(rng, scenes)
    # each row takes the caption of the next row in a random cycle: always another image's caption
    order = rng.permutation(n)
    donor = np.empty(n, dtype=np.int64)
    donor[order] = np.roll(order, -1)
    _repair_same_class(rng, donor, scenes["cls"])
    return scenes, [own[d] for d in donor], scenes["cls"][donor]


def _repair_same_class(rng, donor: np.ndarray, cls: np.ndarray) -> None:
    """Swap donors so that (almost) no caption names the class its image shows: such a pair is not noise."""
    for i in np.flatnonzero(cls[donor] == cls):
        for j in rng.permutation(len(donor))[:64]:
            if cls[donor[j]] != cls[i] and cls[donor[i]] != cls[j] and i != donor[j] and j != donor[i]:
                donor[i], donor[j] = donor[j], donor[i]
                break


def _boilerplate(rng, n, cfg):
    scenes = sc.sample_objects(rng, n, cfg.zipf)
    return scenes, cap.boilerplate(rng, n), np.full(n, -1)


def _low_info(rng, n, cfg):
    kinds = rng.integers(0, 3, size=n)  # blank, pure noise, heavy blur
    scenes = sc.sample_objects(rng, n, cfg.zipf)
    captions = cap.clean_captions(rng, scenes)  # what the image was meant to show
    scenes["kind"][kinds == 0], scenes["kind"][kinds == 1] = sc.KIND_BLANK, sc.KIND_NOISE
    blurred = kinds == 2
    scenes["blur"][blurred] = rng.uniform(2.5, 4.0, size=int(blurred.sum()))
    named = scenes["cls"].copy()
    scenes["cls"][~blurred] = -1
    return scenes, captions, named


def _text_spotting(rng, n, cfg):
    shown = sc.sample_objects(rng, n, cfg.zipf)
    named = sc.sample_objects(rng, n, cfg.zipf)
    clash = named["cls"] == shown["cls"]
    named["cls"][clash] = (named["cls"][clash] + 1) % len(OBJECTS)
    # the caption's words are drawn into an image of something else: only reading matches the caption
    shown["text"] = cap.text_label(named, with_colour=True)
    simple = [f"a {c}" if rng.random() < 0.5 else c for c in shown["text"]]
    full = cap.clean_captions(rng, named)
    captions = [s if rng.random() < 0.5 else f for s, f in zip(simple, full)]
    return shown, captions, named["cls"].copy()


def _parrot(rng, n, cfg):
    # a sign of the words "<colour> <object>" captioned with those words: only reading matches them, and a
    # teacher that reads scores them above any photo (the parrot captions that top real CLIP scores)
    named = sc.sample_objects(rng, n, cfg.zipf)
    signs = sc.sample_signs(rng, named)
    return signs, cap.parrot(rng, signs["text"]), signs["cls"].copy()


def _underspecified(rng, n, cfg):
    scenes = sc.sample_objects(rng, n, cfg.zipf)
    return scenes, cap.underspecified(rng, n), np.full(n, -1)


def _off_distribution(rng, n, cfg):
    scenes = sc.sample_off(rng, n, len(OFF_CONCEPTS))
    return scenes, cap.clean_captions(rng, scenes), np.full(n, -1)


def _non_english(rng, n, cfg):
    scenes = sc.sample_objects(rng, n, cfg.zipf)
    captions, langs = cap.foreign(rng, scenes)
    return scenes, captions, scenes["cls"].copy(), langs


_MAKERS = {"clean": _clean, "misaligned": _misaligned, "boilerplate": _boilerplate, "low_info": _low_info,
           "text_spotting": _text_spotting, "parrot": _parrot, "underspecified": _underspecified,
           "off_distribution": _off_distribution, "non_english": _non_english}


def _duplicate_sources(rng, clean_rows: np.ndarray, clean_cls: np.ndarray, n: int, cfg: NanoConfig) -> np.ndarray:
    """Source row for each of ``n`` copies: clusters of 2-8 copies of clean rows, favouring head classes."""
    weights = zipf_weights(len(OBJECTS), cfg.zipf)[clean_cls]  # x class frequency again: head-heavy
    sources: list[int] = []
    while len(sources) < n:
        row = int(rng.choice(clean_rows, p=weights / weights.sum()))
        sources.extend([row] * int(rng.integers(2, 9)))
    return np.asarray(sources[:n], dtype=np.int64)


def compose_pool(cfg: NanoConfig) -> dict:
    """Scenes, captions and oracle columns of the pool, in pool row order.

    Returns a dict with ``scenes`` (to render; near-duplicate rows hold their source's scene), ``captions``,
    ``dup_source`` (row index of the copied row, -1 if none) and ``oracle`` (column name -> array).
    """
    counts = cfg.noise.counts(cfg.pool_size)
    parts, texts, named, noise, langs = [], [], [], [], []
    for name in NOISE_TYPES:
        if name == "near_duplicate":
            continue
        made = _MAKERS[name](derive_rng(cfg.seed, "pool", name), counts[name], cfg)
        parts.append(made[0])
        texts.extend(made[1])
        named.append(np.asarray(made[2], dtype=np.int64))
        noise.extend([name] * counts[name])
        langs.extend(made[3] if len(made) > 3 else ["en"] * counts[name])
    scenes = sc.concat(parts)
    named_cls = np.concatenate(named)
    noise_arr = np.array(noise, dtype=object)
    n_dup = counts["near_duplicate"]
    rng = derive_rng(cfg.seed, "pool", "near_duplicate")
    clean_rows = np.flatnonzero(noise_arr == "clean")
    src = _duplicate_sources(rng, clean_rows, scenes["cls"][clean_rows], n_dup, cfg)
    scenes = sc.concat([scenes, sc.take(scenes, src)])
    retold = rng.random(n_dup) < 0.4  # some copies carry a re-generated caption, most the same one
    fresh = cap.clean_captions(rng, sc.take(scenes, src))
    texts.extend(fresh[i] if retold[i] else texts[s] for i, s in enumerate(src))
    named_cls = np.concatenate([named_cls, named_cls[src]])
    noise_arr = np.concatenate([noise_arr, np.array(["near_duplicate"] * n_dup, dtype=object)])
    langs.extend(["en"] * n_dup)
    dup_source = np.concatenate([np.full(cfg.pool_size - n_dup, -1), src])
    exact = np.concatenate([np.zeros(cfg.pool_size - n_dup, bool), rng.random(n_dup) < 0.25])
    return _shuffle(cfg, scenes, texts, named_cls, noise_arr, np.array(langs, dtype=object), dup_source, exact)


def _shuffle(cfg, scenes, texts, named_cls, noise_arr, langs, dup_source, exact) -> dict:
    order = derive_rng(cfg.seed, "pool", "order").permutation(cfg.pool_size)
    position_of = np.empty_like(order)
    position_of[order] = np.arange(cfg.pool_size)
    dup = np.where(dup_source[order] >= 0, position_of[np.maximum(dup_source[order], 0)], -1)
    scenes = sc.take(scenes, order)
    obj = np.where(scenes["kind"] == sc.KIND_OBJECT, scenes["cls"], -1)
    deciles, groups = concept_deciles(), head_tail()
    oracle = {
        "noise_type": noise_arr[order].astype(str),
        "content": np.array(sc.CONTENT)[scenes["kind"]],
        "object_class": obj, "caption_class": named_cls[order],
        "off_concept": np.where(scenes["kind"] == sc.KIND_OFF, scenes["cls"], -1),
        **{f: scenes[f].copy() for f in ("colour", "size", "count", "position", "background", "texture", "style")},
        "blur": scenes["blur"].astype(np.float32),
        "text_drawn": scenes["text"].astype(str),
        "caption_lang": langs[order].astype(str),
        "concept_decile": np.where(obj >= 0, deciles[np.maximum(obj, 0)], -1),
        "head_tail": np.where(obj >= 0, groups[np.maximum(obj, 0)], "none").astype(str),
        "dup_exact": exact[order],
    }
    return {"scenes": scenes, "captions": [texts[i] for i in order], "dup_source": dup, "oracle": oracle}


def perturb_copies(images: np.ndarray, dup_source: np.ndarray, exact: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Fill near-duplicate rows from their sources: exact copies, or shifted by a pixel and re-exposed."""
    out = images.copy()
    for row in np.flatnonzero(dup_source >= 0):
        copy = images[dup_source[row]].astype(np.float32)
        if not exact[row]:
            copy = np.roll(copy, shift=tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
            copy = copy * rng.uniform(0.93, 1.07) + rng.normal(0, 2.0, size=copy.shape)
        out[row] = np.clip(np.rint(copy), 0, 255).astype(np.uint8)
    return out
