"""The HTML of a section's analysis: the prose blocks, the Holm pairwise heatmap and the per-task heatmap.

Heatmaps are HTML tables with coloured cells (inline styles, which the page's Content-Security-Policy allows),
not SVG: the browser lays the cells out, so labels can never overlap however many recipes a board holds, and a
reader can still select and copy every number.  Colours carry no meaning the text lacks: each cell also shows
its value, and the Holm verdict is marked with a symbol.
"""

from __future__ import annotations

from html import escape

from filterbench.leaderboard.aggregate import Entry, Section
from filterbench.leaderboard.analysis import Analysis, TaskChance
from filterbench.leaderboard.columns import DASH, REAL, fmt_diff
from filterbench.leaderboard.report import Block, Name, Paragraph, section_blocks

CSS = """
table.heat td, table.heat th { padding: 2px 5px; font-size: 12px; text-align: center; }
table.heat th.row { text-align: left; }
table.heat th.col { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap;
  text-align: left; }
table.heat th.flat { color: #888; font-style: italic; }
.analysis h4 { margin: 18px 0 6px; } .analysis p, .analysis ul { max-width: 980px; }
"""

# RdBu end points: red and blue stay distinct for the common colour-vision deficiencies
_ABOVE, _BELOW, _NEUTRAL = (33, 102, 172), (178, 24, 43), (247, 247, 247)
_LOW, _HIGH = (247, 251, 255), (8, 81, 156)  # Blues, for scores


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0)
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def _style(rgb: tuple[int, int, int]) -> str:
    # text colour by luminance so every value stays legible on its background
    light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140
    return f"background:#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x};color:{'#111' if light else '#fff'}"


def _segments(paragraph: Paragraph) -> str:
    return "".join(f"<code>{escape(s.text)}</code>" if isinstance(s, Name) else escape(s) for s in paragraph)


def blocks_html(blocks: list[Block]) -> list[str]:
    lines = []
    for block in blocks:
        lines.append(f"<h4>{escape(block.title)}</h4>")
        lines += [f"<p>{_segments(p)}</p>" for p in block.paragraphs]
        if block.items:
            lines.append("<ul>" + "".join(f"<li>{_segments(i)}</li>" for i in block.items) + "</ul>")
    return lines


def _row_head(rank: int, recipe: str) -> str:
    return f'<th scope="row" class="row">{rank}. {escape(recipe)}</th>'


def _pair_cell(analysis: Analysis, row: str, col: str) -> str:
    found = analysis.pairwise.get(row, col) if analysis.pairwise else None
    if found is None:
        return f"<td>{DASH}</td>"
    diff, adjusted, real = found
    strength = 1.0 if real else (0.35 if diff.excludes_zero else 0.0)
    rgb = _mix(_NEUTRAL, _ABOVE if diff.mean > 0 else _BELOW, strength)
    verdict = "real after Holm" if real else ("interval excludes 0, not after Holm" if diff.excludes_zero
                                              else "not resolved")
    tip = f"{row} − {col}: {fmt_diff(diff)}; Holm-adjusted p = {adjusted:.3g}; {verdict}"
    mark = f" {REAL}" if real else ""
    return f'<td style="{_style(rgb)}" title="{escape(tip)}">{diff.mean:+.3f}{mark}</td>'


def pairwise_html(section: Section, analysis: Analysis, index: int) -> list[str]:
    """Row minus column for every pair; saturated: real after Holm; pale: the interval alone excludes 0."""
    names = [e.recipe for e in section.entries]
    head = '<th scope="col">row − column</th>' + "".join(
        f'<th scope="col" class="col" title="{escape(n)}">{i}. {escape(n)}</th>'
        for i, n in enumerate(names, 1))
    lines = [f'<div class="wide"><table class="heat pairwise" id="pairwise-{index}">'
             f"<thead><tr>{head}</tr></thead><tbody>"]
    for i, row in enumerate(names, 1):
        cells = "".join("<td>·</td>" if row == col else _pair_cell(analysis, row, col) for col in names)
        lines.append(f"<tr>{_row_head(i, row)}{cells}</tr>")
    note = (f"Blue: the row recipe scores higher; red: lower. Saturated with {REAL}: real after Holm's "
            "correction; pale: the pair's own 95% interval excludes 0 but the correction for all pairs does "
            "not keep it; grey: not resolved. Hover a cell for its interval.")
    return lines + ["</tbody></table></div>", f'<p class="note">{escape(note)}</p>']


def _task_columns(entries: list[Entry], chance: list[TaskChance]) -> list[tuple[str, TaskChance | None]]:
    known = {t.key: t for t in chance}
    keys = [t.key for t in chance] + [k for e in entries for k in e.tasks if k not in known]
    return [(k, known.get(k)) for k in dict.fromkeys(keys)]


def _task_cell(entry: Entry, key: str, info: TaskChance | None, lo: float, hi: float) -> str:
    stat = entry.tasks.get(key)
    if stat is None or stat.mean is None:
        return f"<td>{DASH}</td>"
    base = info.info.chance if info and info.info.chance is not None else lo
    scale = (stat.mean - base) / (hi - base) if hi > base else 0.0
    ci = DASH if stat.ci95 is None else f"{stat.ci95:.3f}"
    tip = f"{entry.recipe} on {key}: {stat.mean:.3f} ± {ci}"
    if info and info.info.chance is not None:
        tip += f" (chance {info.info.chance:.3f})"
    return f'<td style="{_style(_mix(_LOW, _HIGH, scale))}" title="{escape(tip)}">{stat.mean:.3f}</td>'


def tasks_html(section: Section, analysis: Analysis, index: int) -> list[str]:
    """Recipes x tasks, each column shaded from its chance level (white) to its best recipe (dark blue)."""
    columns = _task_columns(section.entries, analysis.tasks)
    if not columns:
        return []
    head = '<th scope="col">recipe</th>'
    for key, info in columns:
        flat = info is not None and info.at_chance
        label = (info.info.name if info else key) + (" (at chance)" if flat else "")
        kind = "col flat" if flat else "col"
        head += f'<th scope="col" class="{kind}" title="{escape(key)}">{escape(label)}</th>'
    lines = [f'<div class="wide"><table class="heat tasks" id="tasks-{index}"><thead><tr>{head}</tr></thead>'
             "<tbody>"]
    ranges = {}
    for key, _ in columns:
        means = [e.tasks[key].mean for e in section.entries
                 if key in e.tasks and e.tasks[key].mean is not None]
        ranges[key] = (min(means), max(means)) if means else (0.0, 0.0)
    for i, e in enumerate(section.entries, 1):
        cells = "".join(_task_cell(e, key, info, *ranges[key]) for key, info in columns)
        lines.append(f"<tr>{_row_head(i, e.recipe)}{cells}</tr>")
    note = ("Mean main metric over seeds. Each column is shaded from its chance level (or its lowest "
            "value where the task list gives none) to its best recipe; headers in grey italics mark tasks no "
            "recipe lifts off chance.")
    return lines + ["</tbody></table></div>", f'<p class="note">{escape(note)}</p>']


def analysis_html(section: Section, analysis: Analysis, index: int) -> list[str]:
    """Everything under a section's plots: the prose blocks, then the two heatmaps (official sections)."""
    lines = ['<div class="analysis">'] + blocks_html(section_blocks(section, analysis))
    if section.official and analysis.pairwise and len(section.entries) > 1:
        lines += ["<h4>Pairwise differences (Average)</h4>"] + pairwise_html(section, analysis, index)
    if section.official:
        lines += ["<h4>Per-task scores</h4>"] + tasks_html(section, analysis, index)
    return lines + ["</div>"]
