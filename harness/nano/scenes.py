"""Scene tables: what each nano image shows, as parallel arrays (one row per image).

A scene table is a plain ``dict`` of equal-length numpy arrays.  Fields (ids index the tuples in
:mod:`~filterbench.harness.nano.world`):

``kind``        0 object scene, 1 off-distribution concept, 2 blank image, 3 pure-noise image, 4 sign (words only)
``cls``         object class id (kind 0; kind 4: the class the sign's words name), off-distribution concept id
                (kind 1), else -1
``colour``      colour id (object colour; the bars' colour for charts)
``size``        size id (0 small, 1 medium, 2 large)
``count``       number of objects (1..3)
``position``    position id (count 1 only; else 0 = center)
``background``  background id; ids >= len(BACKGROUNDS) are the eval-only unusual backgrounds
``texture``     object texture id
``style``       style id; len(STYLES) is the eval-only "noisy" corruption
``blur``        Gaussian blur sigma in pixels applied after rendering (0 = none)
``text``        words drawn into the image as glyphs ("" = none); object array of str
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano.world import (
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOURS,
    OBJECTS,
    POSITIONS,
    STYLES,
    TEXTURES,
    zipf_weights,
)

KIND_OBJECT, KIND_OFF, KIND_BLANK, KIND_NOISE, KIND_SIGN = 0, 1, 2, 3, 4
#: the oracle's ``content`` value per kind
CONTENT = ("object", "off_distribution", "blank", "noise", "text")
FIELDS = ("kind", "cls", "colour", "size", "count", "position", "background", "texture", "style", "blur", "text")
COUNT_P = (0.8, 0.12, 0.08)
TEXTURE_P = (0.55, 0.15, 0.15, 0.15)
POSITION_P = (0.4, 0.15, 0.15, 0.15, 0.15)  # photos are often centred; off-centre ones teach position words
STYLE_P = (0.88, 0.06, 0.06)  # photo, cartoon, sketch: a few renditions so the style shifts are learnable


def sample_objects(rng: np.random.Generator, n: int, zipf: float, classes: np.ndarray | None = None,
                   style_p=STYLE_P, **fixed) -> dict[str, np.ndarray]:
    """``n`` object scenes; classes follow the Zipf law unless given; ``fixed`` pins any field to a value/array.

    Counts, sizes and positions are drawn so that they stay legible at 32 px: several objects are always small
    and centred as a group, a large object is always centred.
    """
    if classes is None:
        classes = rng.choice(len(OBJECTS), size=n, p=zipf_weights(len(OBJECTS), zipf))
    scenes = {
        "kind": np.full(n, KIND_OBJECT, dtype=np.int64),
        "cls": np.asarray(classes, dtype=np.int64),
        "colour": rng.integers(0, len(COLOURS), size=n),
        "count": rng.choice(np.arange(1, 4), size=n, p=COUNT_P),
        "size": rng.integers(0, 3, size=n),
        "position": rng.choice(len(POSITIONS), size=n, p=POSITION_P),
        "background": rng.integers(0, len(BACKGROUNDS), size=n),
        "texture": rng.choice(len(TEXTURES), size=n, p=TEXTURE_P),
        "style": rng.choice(len(STYLES), size=n, p=style_p),
        "blur": np.zeros(n, dtype=np.float64),
        "text": np.full(n, "", dtype=object),
    }
    for name, value in fixed.items():
        scenes[name] = np.broadcast_to(np.asarray(value, dtype=scenes[name].dtype), (n,)).copy()
    return legalise(scenes)


def legalise(scenes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Enforce the legibility rules: groups are small and centred, large objects are centred."""
    many = scenes["count"] > 1
    scenes["size"][many] = 0
    scenes["position"][many | (scenes["size"] == 2)] = 0
    return scenes


def sample_off(rng: np.random.Generator, n: int, n_concepts: int) -> dict[str, np.ndarray]:
    """``n`` off-distribution scenes (charts, barcodes, pages, maps), concepts uniform."""
    scenes = sample_objects(rng, n, 1.0, classes=rng.integers(0, n_concepts, size=n))
    scenes["kind"][:] = KIND_OFF
    scenes["count"][:], scenes["size"][:], scenes["position"][:] = 1, 1, 0
    scenes["style"][:], scenes["texture"][:] = 0, 0
    return scenes


def sample_blank(rng: np.random.Generator, n: int, kind: int) -> dict[str, np.ndarray]:
    """``n`` content-free images (``KIND_BLANK`` or ``KIND_NOISE``)."""
    scenes = sample_objects(rng, n, 1.0)
    scenes["kind"][:], scenes["cls"][:] = kind, -1
    return scenes


def sample_signs(rng: np.random.Generator, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Signs: images of nothing but words, here the colour and name of each row of ``named`` (object scenes).

    The sign keeps ``named``'s class and colour ids (what its words say, for the oracle and the teachers'
    reading heads); it shows no object, so every other attribute is void.
    """
    n = size_of(named)
    scenes = sample_objects(rng, n, 1.0, classes=named["cls"])
    scenes["kind"][:], scenes["colour"][:] = KIND_SIGN, named["colour"]
    scenes["count"][:], scenes["size"][:], scenes["position"][:] = 1, 1, 0
    scenes["style"][:], scenes["texture"][:] = 0, 0
    scenes["text"] = np.array([f"{COLOUR_NAMES[int(c)]} {OBJECTS[int(k)][0]}" for k, c in
                               zip(named["cls"], named["colour"])], dtype=object)
    return scenes


def take(scenes: dict[str, np.ndarray], index) -> dict[str, np.ndarray]:
    """Rows ``index`` of a scene table (a copy)."""
    return {k: v[index].copy() for k, v in scenes.items()}


def concat(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows of several scene tables, in order."""
    return {k: np.concatenate([t[k] for t in tables]) for k in FIELDS}


def size_of(scenes: dict[str, np.ndarray]) -> int:
    return len(scenes["kind"])
