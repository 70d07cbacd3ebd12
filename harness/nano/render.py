"""Rendering scene tables to 32x32 RGB images, vectorised with numpy.

Objects are composited at 2x resolution (64 px) and average-pooled, which anti-aliases edges cheaply.  Each
object instance samples its class silhouette (:func:`shapes.class_masks`) under its own affine transform
(size, aspect, rotation, position).  Randomness comes only from the generator passed in, consumed chunk by chunk
in row order, so the same table and generator give the same pixels.
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano import backgrounds, offdist
from filterbench.harness.nano.scenes import KIND_BLANK, KIND_NOISE, KIND_OBJECT, KIND_OFF, KIND_SIGN, size_of, take
from filterbench.harness.nano.shapes import MASK_RES, class_masks, text_bitmap
from filterbench.harness.nano.world import COLOURS, IMAGE_SIZE, SIZE_RADIUS, STYLES

SUPER = 2  # supersampling factor
CHUNK = 512
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_CARTOON, _SKETCH, _NOISY = 1, 2, len(STYLES)
_OFFSETS = {1: (0.0, 0.0), 2: (-1.0, 0.0), 3: (1.0, 0.0), 4: (0.0, -1.0), 5: (0.0, 1.0)}


def render(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images of a scene table."""
    n = size_of(scenes)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        part = take(scenes, slice(start, min(n, start + CHUNK)))
        out[start:start + CHUNK] = _render_chunk(part, rng)
    return out


def _render_chunk(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    style, kind = scenes["style"], scenes["kind"]
    image = backgrounds.render_backgrounds(scenes["background"], style, rng)  # (B, 32, 32, 3) float
    objects = np.flatnonzero(kind == KIND_OBJECT)
    if objects.size:
        image[objects] = _draw_objects(take(scenes, objects), image[objects], rng)
    for rows, fill in ((kind == KIND_OFF, offdist.render_off), (kind == KIND_BLANK, _blank),
                       (kind == KIND_NOISE, _noise), (kind == KIND_SIGN, _signs)):
        index = np.flatnonzero(rows)
        if index.size:
            image[index] = fill(take(scenes, index), rng)
    _draw_text(image, np.where(kind == KIND_SIGN, "", scenes["text"]), rng)
    _blur(image, scenes["blur"])
    _finish(image, style, kind, rng)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# -- objects ---------------------------------------------------------------------------------------------------
def _instances(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One row per object instance: owner row, class, centre, half-extents, rotation."""
    owner = np.repeat(np.arange(size_of(scenes)), scenes["count"])
    slot = np.concatenate([np.arange(c) for c in scenes["count"]])
    count = scenes["count"][owner]
    lo_hi = np.array(SIZE_RADIUS, dtype=np.float64)[scenes["size"][owner]]
    radius = rng.uniform(lo_hi[:, 0], lo_hi[:, 1])
    radius = np.where(count == 3, np.minimum(radius, 6.5), np.where(count == 2, np.minimum(radius, 7.5), radius))
    aspect = rng.uniform(-0.08, 0.08, size=len(owner))
    centre = np.full((len(owner), 2), IMAGE_SIZE / 2.0)
    # single objects: offset towards their position; groups: slots on a line (2) or a triangle (3)
    position = scenes["position"][owner]
    for pos, (dx, dy) in _OFFSETS.items():
        sel = (count == 1) & (position == pos - 1) if pos > 1 else np.zeros(len(owner), bool)
        # off-centre objects sit near the border, partly cut off as in real photos, so the shift is unmistakable
        centre[sel] += np.stack([dx, dy]) * (IMAGE_SIZE / 2.0 - 0.65 * radius[sel, None])
    turn = rng.uniform(0, 2 * np.pi, size=size_of(scenes))[owner]
    angle = turn + 2 * np.pi * slot / np.maximum(count, 1)
    spread = np.where(count == 2, 8.0, 9.0)
    centre[count > 1] += (np.stack([np.cos(angle), np.sin(angle)], 1) * spread[:, None])[count > 1]
    centre += rng.uniform(-1.2, 1.2, size=centre.shape)
    return {"owner": owner, "cls": scenes["cls"][owner], "cx": centre[:, 0], "cy": centre[:, 1],
            "sx": radius * (1 + aspect), "sy": radius * (1 - aspect),
            "theta": rng.uniform(-0.15, 0.15, size=len(owner))}


def _local_coords(inst: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each instance's supersampled canvas grid in its own frame ([-1, 1] covers the silhouette's box)."""
    grid = (np.arange(IMAGE_SIZE * SUPER, dtype=np.float32) + 0.5) / SUPER
    dx = grid[None, None, :] - inst["cx"][:, None, None].astype(np.float32)
    dy = grid[None, :, None] - inst["cy"][:, None, None].astype(np.float32)
    cos, sin = np.cos(inst["theta"])[:, None, None], np.sin(inst["theta"])[:, None, None]
    qx = (dx * cos + dy * sin) / inst["sx"][:, None, None]
    qy = (-dx * sin + dy * cos) / inst["sy"][:, None, None]
    return qx.astype(np.float32), qy.astype(np.float32)


def _coverage(inst: dict[str, np.ndarray], qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Silhouette coverage (nearest lookup in the class mask) on each instance's supersampled grid."""
    flat = class_masks().reshape(-1)
    half = np.float32(0.5 * (MASK_RES - 1))
    ix = np.rint((qx + 1) * half).astype(np.int32)
    iy = np.rint((qy + 1) * half).astype(np.int32)
    inside = (ix >= 0) & (ix < MASK_RES) & (iy >= 0) & (iy < MASK_RES)
    np.clip(ix, 0, MASK_RES - 1, out=ix)
    np.clip(iy, 0, MASK_RES - 1, out=iy)
    index = (inst["cls"].astype(np.int32)[:, None, None] * MASK_RES + iy) * MASK_RES + ix
    return np.where(inside, np.take(flat, index), np.float32(0.0))


def _edges(alpha: np.ndarray, width: int) -> np.ndarray:
    """Outline of a (I, H, W) coverage: inside pixels within ``width`` supersampled pixels of the outside."""
    solid = alpha > 0.5
    inner = solid.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[:, 1:, :] &= inner[:, :-1, :]
        shrunk[:, :-1, :] &= inner[:, 1:, :]
        shrunk[:, :, 1:] &= inner[:, :, :-1]
        shrunk[:, :, :-1] &= inner[:, :, 1:]
        inner = shrunk
    return (solid & ~inner).astype(np.float32)


def _pattern(texture: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Texture mask (1 = pattern colour) in object coordinates, so patterns move and scale with the object."""
    out = np.zeros(qx.shape, dtype=np.float32)
    for t in (1, 2, 3):
        sel = np.flatnonzero(texture == t)
        if not sel.size:
            continue
        x, y = (qx[sel] + 1) * 2.5, (qy[sel] + 1) * 2.5
        if t == 1:  # diagonal stripes
            out[sel] = np.floor(x + y) % 2 == 0
        elif t == 2:  # dots on a grid
            out[sel] = (x - np.floor(x) - 0.5) ** 2 + (y - np.floor(y) - 0.5) ** 2 < 0.09
        else:  # checkerboard
            out[sel] = (np.floor(x) + np.floor(y)) % 2 == 0
    return out


def _pool(a: np.ndarray) -> np.ndarray:
    """Average-pool the supersampled grid down to the 32 px canvas (strided sums: faster than a reshape mean)."""
    return (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) * np.float32(0.25)


def _draw_objects(scenes: dict[str, np.ndarray], canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Composite every object instance onto its image; only coverage is supersampled (edges need it)."""
    inst = _instances(scenes, rng)
    qx, qy = _local_coords(inst)
    alpha64 = _coverage(inst, qx, qy)
    alpha, outline = _pool(alpha64)[..., None], _pool(_edges(alpha64, SUPER))[..., None]
    qx, qy = _pool(qx), _pool(qy)
    owner = inst["owner"]
    style = scenes["style"][owner]
    base = _PALETTE[scenes["colour"][owner]] * rng.uniform(0.9, 1.08, size=(len(owner), 1)).astype(np.float32)
    base = np.clip(base + rng.normal(0, 6, size=base.shape).astype(np.float32), 0, 255)
    shade = np.where(base.mean(1, keepdims=True) > 90, base * 0.45, base + 110.0)
    pattern = _pattern(scenes["texture"][owner], qx, qy)[..., None]
    fill = base[:, None, None, :] + (shade - base)[:, None, None, :] * pattern
    light = rng.uniform(-1, 1, size=(len(owner), 2)).astype(np.float32)
    photo = np.flatnonzero((style == 0) | (style == _NOISY))
    fill[photo] *= (1 + 0.16 * (qx[photo] * light[photo, :1, None] + qy[photo] * light[photo, 1:, None]))[..., None]
    # cartoon: flat fill with a dark outline; sketch: the outline alone, no fill
    dark = np.float32(30.0)
    drawn = np.flatnonzero(style == _CARTOON)
    fill[drawn] = fill[drawn] * (1 - outline[drawn]) + dark * outline[drawn]
    sketch = np.flatnonzero(style == _SKETCH)
    fill[sketch], alpha[sketch] = dark, outline[sketch]
    out = canvas.copy()
    slots = np.concatenate([np.arange(c) for c in scenes["count"]])
    for slot in range(int(slots.max()) + 1):  # one image's objects do not overlap much: paint slot by slot
        sel = np.flatnonzero(slots == slot)
        rows = owner[sel]
        out[rows] = out[rows] * (1 - alpha[sel]) + fill[sel] * alpha[sel]
    return out


# -- other content -----------------------------------------------------------------------------------------------
def _blank(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    colour = rng.uniform(0, 255, size=(size_of(scenes), 1, 1, 3))
    return np.broadcast_to(colour, (size_of(scenes), IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def _noise(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=(size_of(scenes), IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def _signs(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Signs: a board filling the frame with up to two words on it, twice the label size when they fit.

    Nothing else is in the picture, so a model that reads matches the sign to a caption of its words better
    than any photo to its caption (the parrot-caption case); a model that does not read sees two kinds of board.
    """
    n = size_of(scenes)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    light = rng.integers(0, 2, size=n).astype(bool)
    shade = rng.normal(0, 6, size=n)
    nudge = rng.integers(-2, 3, size=(n, 3))
    for row, text in enumerate(scenes["text"]):
        ink, board = (20.0, 235.0) if light[row] else (235.0, 20.0)
        out[row] = board + shade[row]
        words = str(text).split()[:2]
        scale = 2 if all(8 * len(w) - 2 <= IMAGE_SIZE - 2 for w in words) else 1
        line_height = 7 * scale
        top = max(1, (IMAGE_SIZE - line_height * len(words)) // 2 + int(nudge[row, 0]))
        for line, word in enumerate(words):
            bitmap = np.kron(text_bitmap(word, IMAGE_SIZE - 2), np.ones((scale, scale), dtype=bool))
            bitmap = bitmap[:, :IMAGE_SIZE - 2]
            y = top + scale + line_height * line
            x = 1 + (IMAGE_SIZE - 2 - bitmap.shape[1]) // 2 + int(nudge[row, 1 + line] // 2)
            x = min(max(1, x), IMAGE_SIZE - 1 - bitmap.shape[1])
            out[row, y:y + bitmap.shape[0], x:x + bitmap.shape[1]][bitmap] = ink
    return out


def _draw_text(image: np.ndarray, texts: np.ndarray, rng: np.random.Generator) -> None:
    """Draw up to two words per image as 3x5 glyphs on a contrasting label band."""
    for row in np.flatnonzero(texts != ""):
        words = str(texts[row]).split()[:2]
        top = int(rng.integers(1, IMAGE_SIZE - 6 * len(words) - 1))
        light = bool(rng.integers(0, 2))
        ink, band = (20.0, 235.0) if light else (235.0, 20.0)
        for line, word in enumerate(words):
            bitmap = text_bitmap(word, IMAGE_SIZE - 2)
            y = top + 6 * line
            x = int(rng.integers(1, IMAGE_SIZE - bitmap.shape[1]))
            image[row, y - 1:y + 6, x - 1:x + bitmap.shape[1] + 1] = band
            patch = image[row, y:y + 5, x:x + bitmap.shape[1]]
            patch[bitmap] = ink


def _blur(image: np.ndarray, sigma: np.ndarray) -> None:
    for row in np.flatnonzero(sigma > 0):
        radius = int(np.ceil(3 * sigma[row]))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma[row]) ** 2)
        taps /= taps.sum()
        padded = np.pad(image[row], ((radius, radius), (radius, radius), (0, 0)), mode="edge")
        rows = sum(w * padded[i:i + IMAGE_SIZE, :, :] for i, w in enumerate(taps))
        image[row] = sum(w * rows[:, i:i + IMAGE_SIZE, :] for i, w in enumerate(taps))


def _finish(image: np.ndarray, style: np.ndarray, kind: np.ndarray, rng: np.random.Generator) -> None:
    """Camera effects: exposure and sensor noise for photos, paper grain for sketches, heavy noise for 'noisy'."""
    n = len(style)
    gain = np.where(style == 0, rng.uniform(0.85, 1.12, size=n), 1.0)
    sigma = np.select([style == _NOISY, style == 0, style == _SKETCH], [48.0, 4.0, 3.0], 0.0)
    sigma = np.where(kind == KIND_NOISE, 0.0, sigma)
    image *= gain[:, None, None, None].astype(np.float32)
    image += rng.standard_normal(size=image.shape, dtype=np.float32) * sigma[:, None, None, None].astype(np.float32)
