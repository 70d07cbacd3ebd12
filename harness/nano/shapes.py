"""Pictogram silhouettes of the object classes and the bitmap font used for text drawn into images.

Each class is a list of drawing operations in a unit box ([0, 1] x [0, 1], y down).  They are rasterised once,
at :data:`MASK_RES` pixels, into a float mask that the renderer samples under each instance's affine transform.
Silhouettes are chosen to stay distinct at 32 px (a tiny ViT must be able to tell them apart).
"""

from __future__ import annotations

import functools

import numpy as np

from filterbench.harness.nano.world import OBJECT_NAMES

MASK_RES = 96


def _star(points: int, outer: float, inner: float, cx=0.5, cy=0.52) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii)]


# Drawing ops: ("ellipse"|"rect", box, fill) , ("poly", points, fill), ("pie", box, start, end, fill),
# ("line", points, width, fill).  fill 1 paints, 0 erases (ring holes, the moon's bite).
SHAPES: dict[str, list[tuple]] = {
    "ball": [("ellipse", (0.08, 0.08, 0.92, 0.92), 1)],
    "house": [("rect", (0.2, 0.46, 0.8, 0.94), 1), ("poly", [(0.06, 0.5), (0.5, 0.06), (0.94, 0.5)], 1),
              ("rect", (0.43, 0.7, 0.57, 0.94), 0)],
    "tree": [("ellipse", (0.18, 0.04, 0.82, 0.62), 1), ("rect", (0.42, 0.55, 0.58, 0.96), 1)],
    "car": [("rect", (0.04, 0.42, 0.96, 0.72), 1), ("poly", [(0.24, 0.43), (0.34, 0.18), (0.68, 0.18),
                                                             (0.8, 0.43)], 1),
            ("ellipse", (0.12, 0.6, 0.38, 0.86), 1), ("ellipse", (0.62, 0.6, 0.88, 0.86), 1)],
    "star": [("poly", _star(5, 0.48, 0.2), 1)],
    "fish": [("ellipse", (0.04, 0.24, 0.7, 0.76), 1), ("poly", [(0.62, 0.5), (0.96, 0.18), (0.96, 0.82)], 1),
             ("ellipse", (0.16, 0.38, 0.26, 0.48), 0)],
    "cup": [("rect", (0.14, 0.22, 0.68, 0.92), 1), ("ellipse", (0.5, 0.34, 0.94, 0.78), 1),
            ("ellipse", (0.64, 0.46, 0.8, 0.66), 0), ("rect", (0.14, 0.22, 0.68, 0.92), 1)],
    "heart": [("ellipse", (0.06, 0.1, 0.54, 0.56), 1), ("ellipse", (0.46, 0.1, 0.94, 0.56), 1),
              ("poly", [(0.09, 0.42), (0.91, 0.42), (0.5, 0.94)], 1)],
    "arrow": [("rect", (0.04, 0.4, 0.6, 0.6), 1), ("poly", [(0.52, 0.12), (0.96, 0.5), (0.52, 0.88)], 1)],
    "moon": [("ellipse", (0.06, 0.06, 0.94, 0.94), 1), ("ellipse", (0.3, -0.04, 1.12, 0.8), 0)],
    "flag": [("rect", (0.1, 0.04, 0.2, 0.96), 1), ("poly", [(0.2, 0.06), (0.92, 0.2), (0.2, 0.56)], 1)],
    "mushroom": [("pie", (0.04, 0.08, 0.96, 0.9), 180, 360, 1), ("rect", (0.37, 0.48, 0.63, 0.94), 1)],
    "boat": [("poly", [(0.04, 0.62), (0.96, 0.62), (0.78, 0.9), (0.22, 0.9)], 1),
             ("poly", [(0.52, 0.04), (0.52, 0.56), (0.88, 0.56)], 1),
             ("poly", [(0.46, 0.14), (0.46, 0.56), (0.16, 0.56)], 1)],
    "ring": [("ellipse", (0.06, 0.06, 0.94, 0.94), 1), ("ellipse", (0.3, 0.3, 0.7, 0.7), 0)],
    "cross": [("rect", (0.36, 0.04, 0.64, 0.96), 1), ("rect", (0.04, 0.36, 0.96, 0.64), 1)],
    "umbrella": [("pie", (0.04, 0.06, 0.96, 0.9), 180, 360, 1), ("rect", (0.46, 0.46, 0.54, 0.86), 1),
                 ("line", [(0.5, 0.86), (0.5, 0.92), (0.36, 0.92), (0.36, 0.82)], 0.07, 1)],
    "diamond": [("poly", [(0.5, 0.02), (0.9, 0.5), (0.5, 0.98), (0.1, 0.5)], 1)],
    "bell": [("poly", [(0.3, 0.3), (0.7, 0.3), (0.8, 0.76), (0.94, 0.82), (0.06, 0.82), (0.2, 0.76)], 1),
             ("ellipse", (0.28, 0.08, 0.72, 0.5), 1), ("ellipse", (0.42, 0.78, 0.58, 0.96), 1)],
    "hourglass": [("poly", [(0.12, 0.04), (0.88, 0.04), (0.5, 0.5)], 1),
                  ("poly", [(0.5, 0.5), (0.88, 0.96), (0.12, 0.96)], 1)],
    "key": [("ellipse", (0.02, 0.28, 0.46, 0.72), 1), ("ellipse", (0.14, 0.4, 0.3, 0.6), 0),
            ("rect", (0.4, 0.44, 0.98, 0.56), 1), ("rect", (0.72, 0.56, 0.8, 0.74), 1),
            ("rect", (0.86, 0.56, 0.94, 0.7), 1)],
}


def _draw(ops: list[tuple], res: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (res, res), 0)
    draw = ImageDraw.Draw(canvas)
    scale = lambda pts: [(x * res, y * res) for x, y in pts]
    for op in ops:
        kind, fill = op[0], 255 * op[-1]
        if kind == "ellipse":
            draw.ellipse([v * res for v in op[1]], fill=fill)
        elif kind == "rect":
            draw.rectangle([v * res for v in op[1]], fill=fill)
        elif kind == "poly":
            draw.polygon(scale(op[1]), fill=fill)
        elif kind == "pie":
            draw.pieslice([v * res for v in op[1]], op[2], op[3], fill=fill)
        elif kind == "line":
            draw.line(scale(op[1]), fill=fill, width=max(1, int(op[2] * res)))
    return np.asarray(canvas, dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=1)
def class_masks() -> np.ndarray:
    """(classes, MASK_RES, MASK_RES) float32 silhouettes in class-id order, with a zero border row/column."""
    masks = np.stack([_draw(SHAPES[name], MASK_RES) for name in OBJECT_NAMES])
    masks[:, [0, -1], :] = 0.0
    masks[:, :, [0, -1]] = 0.0
    return masks


# A 3x5 bitmap font for capitals and digits (rows top to bottom, 3 bits each, MSB = left column).
_FONT_ROWS = {
    "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6), "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7),
    "F": (7, 4, 6, 4, 4), "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5), "I": (7, 2, 2, 2, 7), "J": (1, 1, 1, 5, 2),
    "K": (5, 5, 6, 5, 5), "L": (4, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5), "O": (2, 5, 5, 5, 2),
    "P": (6, 5, 6, 4, 4), "Q": (2, 5, 5, 6, 3), "R": (6, 5, 6, 5, 5), "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2),
    "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2), "W": (5, 5, 7, 7, 5), "X": (5, 5, 2, 5, 5), "Y": (5, 5, 2, 2, 2),
    "Z": (7, 1, 2, 4, 7), "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (6, 1, 2, 4, 7), "3": (6, 1, 2, 1, 6),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 6, 1, 6), "6": (3, 4, 7, 5, 7), "7": (7, 1, 2, 2, 2), "8": (7, 5, 7, 5, 7),
    "9": (7, 5, 7, 1, 6), " ": (0, 0, 0, 0, 0),
}


def text_bitmap(text: str, max_width: int) -> np.ndarray:
    """A (5, width) boolean bitmap of ``text`` in capitals, 1 px between letters, cut at ``max_width``."""
    columns: list[np.ndarray] = []
    for char in text.upper():
        rows = _FONT_ROWS.get(char, _FONT_ROWS[" "])
        glyph = np.array([[(r >> (2 - c)) & 1 for c in range(3)] for r in rows], dtype=bool)
        columns.extend([glyph, np.zeros((5, 1), dtype=bool)])
    bitmap = np.concatenate(columns, axis=1) if columns else np.zeros((5, 0), dtype=bool)
    return bitmap[:, :max_width]
