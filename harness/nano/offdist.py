"""Off-distribution concepts: charts, barcodes, pages of text and maps.

They are well captioned (CLIP scores them as aligned) but no eval task ever asks about them, so training on them
spends budget without improving the benchmark: the case that target-distribution methods (NormSim, DFN,
image-based clustering) should remove.  Concept ids index :data:`world.OFF_CONCEPTS`.
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano.shapes import text_bitmap
from filterbench.harness.nano.world import COLOURS, IMAGE_SIZE, OFF_CONCEPTS

S = IMAGE_SIZE
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_PAPER = np.array([247, 246, 240], np.float32)
_INK = np.float32(35.0)


def _axes(img: np.ndarray) -> None:
    img[3:29, 3] = _INK
    img[28, 3:29] = _INK


def _bar_chart(img, colour, rng):
    _axes(img)
    bars = int(rng.integers(3, 6))
    width = 22 // bars
    for b in range(bars):
        height = int(rng.integers(5, 24))
        x0 = 5 + b * width
        img[28 - height:28, x0:x0 + width - 1] = colour


def _pie_chart(img, colour, rng):
    y, x = np.mgrid[0:S, 0:S] + 0.5
    r = np.hypot(x - 16, y - 16)
    angle = (np.arctan2(y - 16, x - 16) + np.pi) / (2 * np.pi)
    cuts = np.sort(rng.uniform(0, 1, size=int(rng.integers(2, 4))))
    sector = np.searchsorted(cuts, angle)
    colours = np.concatenate([colour[None], _PALETTE[rng.integers(0, len(_PALETTE), size=len(cuts))]])
    disk = r < 12
    img[disk] = colours[sector[disk]]


def _line_graph(img, colour, rng):
    img[np.arange(4, 28, 6), 4:29] = np.float32(215.0)
    _axes(img)
    ys = np.clip(np.cumsum(rng.normal(0, 3, size=25)) + rng.uniform(10, 22), 5, 27).astype(int)
    for i, yv in enumerate(ys):
        img[yv:yv + 2, 4 + i] = colour


def _barcode(img, colour, rng):
    widths = rng.integers(1, 3, size=16)
    x = 4
    for i, w in enumerate(widths):
        if i % 2 == 0 and x + w < 28:
            img[6:23, x:x + w] = _INK
        x += int(w)
    digits = "".join(str(d) for d in rng.integers(0, 10, size=6))
    bitmap = text_bitmap(digits, 26)
    patch = img[25:30, 4:4 + bitmap.shape[1]]
    patch[bitmap] = _INK


def _page_of_text(img, colour, rng):
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ    "))
    for line in range(4):
        words = "".join(rng.choice(letters, size=7))
        bitmap = text_bitmap(words, 26)
        patch = img[3 + 7 * line:8 + 7 * line, 3:3 + bitmap.shape[1]]
        patch[bitmap] = _INK


def _street_map(img, colour, rng):
    img[:] = np.array([236, 228, 205], np.float32)
    for _ in range(2):
        x0, y0, w, h = rng.integers(0, 24, size=4)
        img[y0:y0 + 4 + h // 3, x0:x0 + 4 + w // 3] = np.array([170, 210, 150], np.float32)
    xs = np.cumsum(rng.integers(5, 11, size=4))
    ys = np.cumsum(rng.integers(5, 11, size=4))
    for v in xs[xs < S - 1]:
        img[:, v:v + 2] = np.float32(252.0)
    for v in ys[ys < S - 1]:
        img[v:v + 2, :] = np.array([250, 215, 90], np.float32)
    river = (np.sin(np.arange(S) * 0.3 + rng.uniform(0, 6)) * 4 + rng.uniform(8, 24)).astype(int)
    img[np.clip(river, 0, S - 2), np.arange(S)] = np.array([80, 140, 220], np.float32)


_MAKERS = (_bar_chart, _pie_chart, _line_graph, _barcode, _page_of_text, _street_map)


def render_off(scenes: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(n, 32, 32, 3) float32 images of off-distribution scenes (``cls`` = concept id)."""
    n = len(scenes["cls"])
    out = np.broadcast_to(_PAPER, (n, S, S, 3)).copy()
    out += rng.normal(0, 4, size=(n, 1, 1, 3)).astype(np.float32)
    for row in range(n):
        _MAKERS[int(scenes["cls"][row])](out[row], _PALETTE[scenes["colour"][row]], rng)
    return out


assert len(_MAKERS) == len(OFF_CONCEPTS)
