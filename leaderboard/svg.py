"""Inline SVG plots for the HTML board, drawn in Python so the page needs no plotting library or network.

Every coordinate is written with one decimal and every label goes through :func:`html.escape`, so the same
entries give the same bytes and no record text can open a tag.  Points are numbered with their board rank; the
legend beside each plot maps numbers to recipe names.  Readability does not depend on the number of recipes:
each gets its own colour (:func:`colors`, as far apart as a colour space allows), a point's number is placed
where it overlaps no other number (or left out: the colour, legend and tooltip still name the point), the
legend is as wide as its longest name and the bar plot widens with the number of bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from html import escape

# Tableau 10: distinguishable, colour-blind friendlier than matplotlib's old default
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
PLOT_W, PLOT_H = 380, 260  # the plotting area
LEFT, TOP, BOTTOM, LEGEND_W = 64, 34, 58, 200
BAR_MIN_W = 5  # the narrowest bar before the bar plot widens
CHAR_W = 7.2  # generous width of a 12 px character
LABEL_UP, LABEL_DOWN = 12, 4  # a point label's extent above and below its baseline (11 px bold, with margin)


@dataclass(frozen=True)
class Series:
    """One recipe in a plot: its rank (the number drawn), name and colour."""

    rank: int
    name: str
    color: str


@dataclass(frozen=True)
class Point:
    series: Series
    x: float
    y: float
    y_err: float | None = None  # 95% CI half-width, drawn as a whisker


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def colors(n: int) -> list[str]:
    """``n`` distinct colours: Tableau 10, then, one at a time, the candidate farthest from all chosen ones.

    Distance is CIE76 Delta E in Lab, which follows perceived difference far better than RGB; candidates are
    a grid of hues, saturations and lightnesses that stay visible on a white page.  Deterministic, so the
    same board gets the same colours.
    """
    out = list(PALETTE[:n])
    if len(out) < n:
        labs = [_lab(c) for c in out]
        pool = _candidates()
        nearest = [min(_delta_e(lab, other) for other in labs) for _, lab in pool]
        while len(out) < n:
            best = max(range(len(pool)), key=lambda i: (nearest[i], -i))
            colour, lab = pool[best]
            out.append(colour)
            nearest = [min(d, _delta_e(lab, other)) for d, (_, other) in zip(nearest, pool)]
    return out


@lru_cache(maxsize=1)
def _candidates() -> tuple[tuple[str, tuple[float, float, float]], ...]:
    colours = dict.fromkeys(_hsl(h, s, lum) for h in range(0, 360, 6) for s in (40, 60, 80)
                            for lum in (30, 42, 54, 66))
    return tuple((c, _lab(c)) for c in colours if c not in PALETTE)


def _hsl(hue: float, sat: float, light: float) -> str:
    s, lum = sat / 100, light / 100
    chroma = (1 - abs(2 * lum - 1)) * s
    x = chroma * (1 - abs((hue / 60) % 2 - 1))
    r, g, b = [(chroma, x, 0), (x, chroma, 0), (0, chroma, x), (0, x, chroma), (x, 0, chroma),
               (chroma, 0, x)][int(hue // 60) % 6]
    m = lum - chroma / 2
    return "#" + "".join(f"{round((v + m) * 255):02x}" for v in (r, g, b))


def _lab(colour: str) -> tuple[float, float, float]:
    """sRGB hex to CIE Lab (D65)."""
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    rows = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
    xyz = [sum(w * c for w, c in zip(row, lin)) / white for row, white in zip(rows, (0.95047, 1.0, 1.08883))]
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _delta_e(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return math.dist(a, b)


def _f(value: float) -> str:
    return f"{value:.1f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = [start + i * step for i in range(math.ceil((hi - start) / step) + 1)]
    return [round(t, 10) for t in ticks]


@dataclass(frozen=True)
class Axis:
    """A linear axis from data values to pixels."""

    lo: float
    hi: float
    px0: float
    px1: float
    fixed: tuple[float, ...] = ()  # explicit ticks (the log axis), else round linear ones

    @classmethod
    def fit(cls, values: list[float], px0: float, px1: float, zero: bool = False) -> Axis:
        lo, hi = min(values + ([0.0] if zero else [])), max(values)
        pad = max((hi - lo) * 0.05, 1e-3)  # keep points off the frame; a single point still gets a range
        lo, hi = (lo if zero and lo == 0.0 else lo - pad), hi + pad
        ticks = nice_ticks(lo, hi)
        return cls(ticks[0], ticks[-1], px0, px1)

    def __call__(self, value: float) -> float:
        span = (self.hi - self.lo) or 1.0
        return self.px0 + (value - self.lo) / span * (self.px1 - self.px0)

    @classmethod
    def log1p(cls, values: list[float], px0: float, px1: float) -> Axis:
        """An axis over ``log10(1 + v)`` for seconds, ticked at 0, 1, 10, 100, ... seconds."""
        top = max(values + [1.0])
        ticks = (0.0,) + tuple(math.log10(1 + 10 ** k) for k in range(math.ceil(math.log10(top)) + 1))
        return cls(0.0, ticks[-1], px0, px1, ticks)

    def ticks(self) -> list[float]:
        if self.fixed:
            return list(self.fixed)
        return [t for t in nice_ticks(self.lo, self.hi) if self.lo - 1e-12 <= t <= self.hi + 1e-12]

    def label(self, tick: float) -> str:
        """Tick text: seconds on the log axis, else just enough decimals to tell neighbouring ticks apart."""
        if self.fixed:
            return f"{round(10 ** tick - 1):,}"
        ticks = self.ticks()
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
        digits = 0
        while digits < 8 and abs(step * 10 ** digits - round(step * 10 ** digits)) > 1e-6:
            digits += 1
        return f"{tick:.{digits}f}"


def _wrap(label: str, width: int = 11) -> list[str]:
    """Words of a category label in lines of about ``width`` characters (bar slots are narrow)."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines[:3] or [""]


def _legend_width(series: list[Series]) -> int:
    longest = max((len(f"{s.rank}. {s.name}") for s in series), default=0)
    return max(LEGEND_W, math.ceil(16 + CHAR_W * longest + 8))


def _open(title: str, series: list[Series], plot_w: float = PLOT_W) -> list[str]:
    width = math.ceil(LEFT + plot_w + 20 + _legend_width(series))
    height = max(TOP + PLOT_H + BOTTOM, TOP + 18 * len(series) + 10)
    return [(f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'),
            f'<text x="{LEFT}" y="20" class="plot-title">{escape(title)}</text>']


def _axes(x: Axis | None, y: Axis, x_label: str, y_label: str, plot_w: float = PLOT_W) -> list[str]:
    bottom = TOP + PLOT_H
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{_f(plot_w)}" height="{PLOT_H}" class="plot-area"/>']
    for t in y.ticks():
        py = _f(y(t))
        parts.append(f'<line x1="{LEFT}" x2="{_f(LEFT + plot_w)}" y1="{py}" y2="{py}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{py}" class="tick" text-anchor="end" dy="4">'
                     f"{y.label(t)}</text>")
    for t in (x.ticks() if x else []):
        px = _f(x(t))
        parts.append(f'<line x1="{px}" x2="{px}" y1="{bottom}" y2="{bottom + 5}" class="axis"/>'
                     f'<text x="{px}" y="{bottom + 18}" class="tick" text-anchor="middle">'
                     f"{escape(x.label(t))}</text>")
    parts.append(f'<text x="{_f(LEFT + plot_w / 2)}" y="{bottom + 40}" class="axis-label" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {_f(TOP + PLOT_H / 2)}) rotate(-90)" class="axis-label" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    return parts


def _legend(series: list[Series], plot_w: float = PLOT_W) -> list[str]:
    x0 = LEFT + plot_w + 20
    parts = []
    for i, s in enumerate(series):
        y = TOP + 12 + 18 * i
        parts.append(f'<circle cx="{_f(x0 + 6)}" cy="{y - 4}" r="5" fill="{s.color}"/>'
                     f'<text x="{_f(x0 + 16)}" y="{y}" class="legend">{s.rank}. {escape(s.name)}</text>')
    return parts


def scatter(points: list[Point], title: str, x_label: str, y_label: str, log_x: bool = False) -> str:
    """A scatter plot with CI whiskers on y; ``log_x`` plots ``log10(1 + x)`` (for seconds that can be 0)."""
    def tx(v: float) -> float:
        return math.log10(1.0 + v) if log_x else v

    if log_x:
        x = Axis.log1p([p.x for p in points], LEFT, LEFT + PLOT_W)
    else:
        x = Axis.fit([p.x for p in points], LEFT, LEFT + PLOT_W)
    y = Axis.fit([p.y - (p.y_err or 0) for p in points] + [p.y + (p.y_err or 0) for p in points],
                 TOP + PLOT_H, TOP)
    parts = _open(title, [p.series for p in points]) + _axes(x, y, x_label, y_label)
    centres = [(x(tx(p.x)), y(p.y)) for p in points]
    offsets = place_labels(centres, [str(p.series.rank) for p in points])
    for p, (cx, cy), offset in zip(points, centres, offsets):
        px, py = _f(cx), _f(cy)
        tip = f"{p.series.name}: {x_label} {p.x:.4g}, {y_label} {p.y:.3f}"
        if p.y_err is not None:
            parts.append(f'<line x1="{px}" x2="{px}" y1="{_f(y(p.y - p.y_err))}" y2="{_f(y(p.y + p.y_err))}" '
                         f'stroke="{p.series.color}" class="whisker"/>')
        label = "" if offset is None else (f'<text x="{px}" y="{py}" dx="{_f(offset[0])}" '
                                           f'dy="{_f(offset[1])}" class="point-label">{p.series.rank}</text>')
        parts.append(f'<g class="point"><title>{escape(tip)}</title>'
                     f'<circle cx="{px}" cy="{py}" r="6" fill="{p.series.color}"/>{label}</g>')
    return "\n".join(parts + _legend([p.series for p in points]) + ["</svg>"])


# where a point's number may go, relative to the point (dx, dy of the text's baseline start); w: its width
_LABEL_SPOTS = (lambda w: (8, -6), lambda w: (8, 14), lambda w: (-8 - w, -6), lambda w: (-8 - w, 14),
                lambda w: (-w / 2, -10), lambda w: (-w / 2, 20), lambda w: (14, -16),
                lambda w: (-14 - w, -16), lambda w: (14, 24), lambda w: (-14 - w, 24))


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(centres: list[tuple[float, float]], texts: list[str]) -> list[tuple[float, float] | None]:
    """An offset per point for its label that overlaps no other label or marker and stays in the plot area.

    Points are served in order (board rank), each taking the first free spot of :data:`_LABEL_SPOTS`; a point
    with none left gets no label (its colour, legend entry and tooltip still identify it).
    """
    taken = [(cx - 7, cy - 7, cx + 7, cy + 7) for cx, cy in centres]  # the markers (r = 6, one pixel spare)
    area = (LEFT, TOP, LEFT + PLOT_W, TOP + PLOT_H)
    out: list[tuple[float, float] | None] = []
    for (cx, cy), text in zip(centres, texts):
        width = CHAR_W * len(text)
        chosen = None
        for spot in _LABEL_SPOTS:
            dx, dy = spot(width)
            box = (cx + dx - 1, cy + dy - LABEL_UP, cx + dx + width + 1, cy + dy + LABEL_DOWN)
            inside = area[0] <= box[0] and box[2] <= area[2] and area[1] <= box[1] and box[3] <= area[3]
            if inside and not any(_overlaps(box, other) for other in taken):
                chosen = (dx, dy)
                taken.append(box)
                break
        out.append(chosen)
    return out


def grouped_bars(categories: list[str], series: list[Series],
                 values: dict[tuple[int, str], tuple[float, float | None]], title: str, y_label: str) -> str:
    """Bars per category (headline group), one per series, with CI whiskers; missing values leave a gap."""
    tops = [mean + (err or 0.0) for mean, err in values.values()]
    y = Axis.fit(tops or [1.0], TOP + PLOT_H, TOP, zero=True)
    # many recipes widen the plot instead of thinning the bars to slivers
    plot_w = max(PLOT_W, math.ceil(len(categories) * len(series) * BAR_MIN_W / 0.8))
    slot = plot_w / max(len(categories), 1)
    bar = slot * 0.8 / max(len(series), 1)
    parts = _open(title, series, plot_w) + _axes(None, y, "", y_label, plot_w)
    for ci, category in enumerate(categories):
        left = LEFT + ci * slot + slot * 0.1
        cx = _f(LEFT + (ci + 0.5) * slot)
        lines = "".join(f'<tspan x="{cx}" dy="{0 if i == 0 else 13}">{escape(line)}</tspan>'
                        for i, line in enumerate(_wrap(category)))
        parts.append(f'<text x="{cx}" y="{TOP + PLOT_H + 16}" class="tick" text-anchor="middle">'
                     f"{lines}</text>")
        for si, s in enumerate(series):
            if (s.rank, category) not in values:
                continue
            mean, err = values[(s.rank, category)]
            bx, top = left + si * bar, y(mean)
            tip = f"{s.name}: {category} {mean:.3f}" + (f" ± {err:.3f}" if err is not None else "")
            parts.append(f'<g class="bar"><title>{escape(tip)}</title><rect x="{_f(bx)}" y="{_f(top)}" '
                         f'width="{_f(bar * 0.92)}" height="{_f(TOP + PLOT_H - top)}" fill="{s.color}"/></g>')
            if err is not None:
                cx = _f(bx + bar * 0.46)
                parts.append(f'<line x1="{cx}" x2="{cx}" y1="{_f(y(mean - err))}" y2="{_f(y(mean + err))}" '
                             f'class="whisker"/>')
    return "\n".join(parts + _legend(series, plot_w) + ["</svg>"])
