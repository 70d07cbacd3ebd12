"""Inline SVG plots for the HTML board, drawn in Python so the page needs no plotting library or network.

Every coordinate is written with one decimal and every label goes through :func:`html.escape`, so the same
entries give the same bytes and no record text can open a tag.  Points are numbered with their board rank; the
legend beside each plot maps numbers to recipe names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# Tableau 10: distinguishable, colour-blind friendlier than matplotlib's old default
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
PLOT_W, PLOT_H = 380, 260  # the plotting area
LEFT, TOP, BOTTOM, LEGEND_W = 64, 34, 58, 200


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


def _open(title: str, n_legend: int) -> list[str]:
    width = LEFT + PLOT_W + 20 + LEGEND_W
    height = max(TOP + PLOT_H + BOTTOM, TOP + 18 * n_legend + 10)
    return [(f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'),
            f'<text x="{LEFT}" y="20" class="plot-title">{escape(title)}</text>']


def _axes(x: Axis | None, y: Axis, x_label: str, y_label: str) -> list[str]:
    bottom = TOP + PLOT_H
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" class="plot-area"/>']
    for t in y.ticks():
        py = _f(y(t))
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{py}" y2="{py}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{py}" class="tick" text-anchor="end" dy="4">'
                     f"{y.label(t)}</text>")
    for t in (x.ticks() if x else []):
        px = _f(x(t))
        parts.append(f'<line x1="{px}" x2="{px}" y1="{bottom}" y2="{bottom + 5}" class="axis"/>'
                     f'<text x="{px}" y="{bottom + 18}" class="tick" text-anchor="middle">'
                     f"{escape(x.label(t))}</text>")
    parts.append(f'<text x="{_f(LEFT + PLOT_W / 2)}" y="{bottom + 40}" class="axis-label" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {_f(TOP + PLOT_H / 2)}) rotate(-90)" class="axis-label" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    return parts


def _legend(series: list[Series]) -> list[str]:
    x0 = LEFT + PLOT_W + 20
    parts = []
    for i, s in enumerate(series):
        y = TOP + 12 + 18 * i
        parts.append(f'<circle cx="{x0 + 6}" cy="{y - 4}" r="5" fill="{s.color}"/>'
                     f'<text x="{x0 + 16}" y="{y}" class="legend">{s.rank}. {escape(s.name)}</text>')
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
    parts = _open(title, len(points)) + _axes(x, y, x_label, y_label)
    for p in points:
        px, py = _f(x(tx(p.x))), _f(y(p.y))
        tip = f"{p.series.name}: {x_label} {p.x:.4g}, {y_label} {p.y:.3f}"
        if p.y_err is not None:
            parts.append(f'<line x1="{px}" x2="{px}" y1="{_f(y(p.y - p.y_err))}" y2="{_f(y(p.y + p.y_err))}" '
                         f'stroke="{p.series.color}" class="whisker"/>')
        parts.append(f'<g class="point"><title>{escape(tip)}</title>'
                     f'<circle cx="{px}" cy="{py}" r="6" fill="{p.series.color}"/>'
                     f'<text x="{px}" y="{py}" dx="8" dy="-6" class="point-label">{p.series.rank}</text></g>')
    return "\n".join(parts + _legend([p.series for p in points]) + ["</svg>"])


def grouped_bars(categories: list[str], series: list[Series],
                 values: dict[tuple[int, str], tuple[float, float | None]], title: str, y_label: str) -> str:
    """Bars per category (headline group), one per series, with CI whiskers; missing values leave a gap."""
    tops = [mean + (err or 0.0) for mean, err in values.values()]
    y = Axis.fit(tops or [1.0], TOP + PLOT_H, TOP, zero=True)
    slot = PLOT_W / max(len(categories), 1)
    bar = slot * 0.8 / max(len(series), 1)
    parts = _open(title, len(series)) + _axes(None, y, "", y_label)
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
    return "\n".join(parts + _legend(series) + ["</svg>"])
