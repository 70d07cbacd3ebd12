"""Procedural backgrounds (the scene attribute) at 32 px, vectorised per background type.

Photos get textured scenes; cartoons get a flat pastel version of the scene's colour; sketches get paper.
Ids beyond :data:`world.BACKGROUNDS` are the unusual backgrounds of the eval shift set (never in the pool).
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano.world import BACKGROUNDS, IMAGE_SIZE

S = IMAGE_SIZE
_MEAN = {"plain": (190, 190, 190), "grass": (70, 140, 55), "sand": (215, 190, 130), "sky": (135, 185, 240),
         "water": (35, 95, 170), "snow": (236, 240, 247), "night": (18, 22, 48), "wall": (150, 62, 45)}
_CARTOON, _SKETCH = 1, 2


def _yx(n: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:S, 0:S].astype(np.float32)
    return np.broadcast_to(y, (n, S, S)), np.broadcast_to(x, (n, S, S))


def _fill(n: int, rgb, rng: np.random.Generator, jitter: float = 12.0) -> np.ndarray:
    base = np.asarray(rgb, dtype=np.float32) + rng.normal(0, jitter, size=(n, 1, 1, 3)).astype(np.float32)
    return np.broadcast_to(base, (n, S, S, 3)).copy()


def _noise(n: int, sigma: float, rng: np.random.Generator, mono: bool = True) -> np.ndarray:
    shape = (n, S, S, 1) if mono else (n, S, S, 3)
    return rng.standard_normal(size=shape, dtype=np.float32) * np.float32(sigma)


def _plain(n, rng):
    grey = rng.uniform(150, 225, size=(n, 1, 1, 1)).astype(np.float32)
    tint = rng.normal(0, 10, size=(n, 1, 1, 3)).astype(np.float32)
    return np.broadcast_to(grey + tint, (n, S, S, 3)) + _noise(n, 2, rng)


def _grass(n, rng):
    streaks = rng.normal(0, 14, size=(n, 1, S, 1)).astype(np.float32)
    return _fill(n, _MEAN["grass"], rng) + streaks * np.array([0.6, 1.0, 0.4], np.float32) + _noise(n, 12, rng)


def _sand(n, rng):
    return _fill(n, _MEAN["sand"], rng, 8) + _noise(n, 9, rng)


def _sky(n, rng):
    y, _ = _yx(n)
    top, bottom = np.array([80, 145, 230], np.float32), np.array([185, 215, 245], np.float32)
    t = (y / (S - 1))[..., None]
    return top * (1 - t) + bottom * t + rng.normal(0, 8, size=(n, 1, 1, 3)).astype(np.float32) + _noise(n, 2, rng)


def _water(n, rng):
    y, x = _yx(n)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    waves = np.sin(0.9 * y + 0.25 * x + phase)[..., None] * np.array([12, 22, 30], np.float32)
    return _fill(n, _MEAN["water"], rng, 8) + waves + _noise(n, 4, rng)


def _snow(n, rng):
    return _fill(n, _MEAN["snow"], rng, 4) + _noise(n, 5, rng)


def _night(n, rng):
    stars = (rng.random(size=(n, S, S, 1)) < 0.03).astype(np.float32) * 200.0
    return _fill(n, _MEAN["night"], rng, 5) + stars + _noise(n, 3, rng)


def _wall(n, rng):
    y, x = _yx(n)
    shift = rng.integers(0, 10, size=(n, 1, 1))
    row = np.floor((y + shift) / 6)
    mortar = (((y + shift) % 6) < 1) | (((x + 5 * (row % 2) + shift) % 10) < 1)
    bricks = _fill(n, _MEAN["wall"], rng, 10) + _noise(n, 8, rng)
    return np.where(mortar[..., None], np.float32(200.0), bricks)


def _rainbow(n, rng):
    y, x = _yx(n)
    hue = ((x + y) / (2 * S) + rng.uniform(0, 1, size=(n, 1, 1))) % 1.0
    channels = [np.clip(np.abs(((hue * 6 + k) % 6) - 3) - 1, 0, 1) for k in (0, 4, 2)]
    return np.stack(channels, axis=-1).astype(np.float32) * 220 + 20


def _checkerboard(n, rng):
    y, x = _yx(n)
    cells = ((np.floor(y / 8) + np.floor(x / 8)) % 2)[..., None]
    a = rng.uniform(150, 240, size=(n, 1, 1, 3)).astype(np.float32)
    b = rng.uniform(150, 240, size=(n, 1, 1, 3)).astype(np.float32)
    return a * cells + b * (1 - cells)


def _pastel_stripes(n, rng):
    y, x = _yx(n)
    band = (np.floor((x - y) / 6) % 3)[..., None]
    colours = rng.uniform(140, 245, size=(n, 3, 1, 1, 3)).astype(np.float32)
    return np.where(band == 0, colours[:, 0], np.where(band == 1, colours[:, 1], colours[:, 2]))


_PHOTO = (_plain, _grass, _sand, _sky, _water, _snow, _night, _wall, _rainbow, _checkerboard, _pastel_stripes)


def render_backgrounds(ids: np.ndarray, style: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 32, 32, 3) float32 backgrounds for background ids and style ids."""
    n = len(ids)
    out = np.empty((n, S, S, 3), dtype=np.float32)
    cartoon, sketch = style == _CARTOON, style == _SKETCH
    for bg, make in enumerate(_PHOTO):
        rows = np.flatnonzero((ids == bg) & ~cartoon & ~sketch)
        if rows.size:
            out[rows] = make(rows.size, rng)
    rows = np.flatnonzero(cartoon)
    if rows.size:  # a flat, brightened version of the scene's typical colour
        means = np.array([_MEAN.get(BACKGROUNDS[i] if i < len(BACKGROUNDS) else "plain") for i in ids[rows]],
                         dtype=np.float32)
        pastel = 0.55 * means + 0.45 * 245 + rng.normal(0, 6, size=means.shape).astype(np.float32)
        out[rows] = pastel[:, None, None, :]
    rows = np.flatnonzero(sketch)
    if rows.size:
        out[rows] = np.array([246, 243, 234], np.float32) + _noise(rows.size, 2, rng)
    return out

