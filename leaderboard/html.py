"""The self-contained ``leaderboard.html``: sortable tables and inline SVG plots, no external resource.

Safety: every string that comes from a record (recipe names, group and task names, noise types, overrides)
passes through :func:`html.escape` before it reaches the page, in text and in attributes alike; the data the
sorting script needs sits in escaped ``data-v`` attributes, never in script text.  A Content-Security-Policy
allows only this file's own script (by hash) and inline styles, so even a missed escape could not run code.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape

from filterbench.leaderboard import svg
from filterbench.leaderboard.aggregate import Entry, Section
from filterbench.leaderboard.analysis import Analysis
from filterbench.leaderboard.build import View
from filterbench.leaderboard.columns import (
    DASH,
    INTRO,
    board_columns,
    cell_text,
    fmt_value,
    header_text,
    section_title,
)
from filterbench.leaderboard.html_analysis import CSS as ANALYSIS_CSS
from filterbench.leaderboard.html_analysis import analysis_html

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 24px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; } h3 { margin-top: 24px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plot { background: #fff; border: 1px solid #eee; }
.plot-area { fill: #fafafa; stroke: #999; } .grid { stroke: #e4e4e4; } .axis { stroke: #999; }
.tick { font-size: 11px; fill: #555; } .axis-label { font-size: 12px; fill: #333; }
.plot-title { font-size: 13px; font-weight: 600; } .legend { font-size: 12px; }
.point-label { font-size: 11px; font-weight: 600; } .whisker { stroke: #333; stroke-width: 1.5; }
.note { color: #555; } .wide { overflow-x: auto; }
"""

# Sorts a table by the clicked column: numbers by value, text by code points; empty cells always last; ties
# keep the board order (data-rank).  Plain ES5 so any headless or old browser runs it.
_SCRIPT = """
(function () {
  "use strict";
  function cellValue(row, col, numeric) {
    var raw = row.cells[col].getAttribute("data-v");
    if (raw === null) { raw = row.cells[col].textContent; }
    if (raw === "") { return null; }
    return numeric ? Number(raw) : raw.toLowerCase();
  }
  function sortBy(table, col, th) {
    var numeric = th.getAttribute("data-type") === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var heads = th.parentNode.cells, i;
    for (i = 0; i < heads.length; i++) { heads[i].setAttribute("aria-sort", "none"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var va = cellValue(a, col, numeric), vb = cellValue(b, col, numeric), c = 0;
      if (va === null || vb === null) {
        c = (va === null ? 1 : 0) - (vb === null ? 1 : 0);
      } else {
        c = va < vb ? -1 : (va > vb ? 1 : 0);
        if (!ascending) { c = -c; }
      }
      return c !== 0 ? c : Number(a.getAttribute("data-rank")) - Number(b.getAttribute("data-rank"));
    });
    for (i = 0; i < rows.length; i++) { body.appendChild(rows[i]); }
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });
})();
"""

_TEXT_KINDS = ("recipe", "overrides", "resources")


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"


def _th(label: str, numeric: bool) -> str:
    kind = "number" if numeric else "text"
    return (f'<th scope="col" data-type="{kind}" aria-sort="none">'
            f'<button type="button">{escape(label)}</button></th>')


def _td(text: str, value: str | None, numeric: bool, title: str | None = None) -> str:
    attrs = f' data-v="{escape(value)}"' if value is not None else ""
    attrs += f' title="{escape(title)}"' if title else ""
    attrs += ' class="num"' if numeric else ""
    return f"<td{attrs}>{escape(text)}</td>"


def _sort_value(entry: Entry, rank: int, kind: str, label: str, analysis: Analysis | None) -> str | None:
    """The machine value a column sorts on ("" for missing); None where the displayed text is the value."""
    numbers = {"rank": rank, "version": entry.recipe_version, "seeds": len(entry.seeds),
               "unique_uids": entry.selection["unique_uids"], "total": entry.selection["total"],
               "max_count": entry.selection["max_count"], "missing": len(entry.missing_tasks)}
    if kind in numbers:
        value = numbers[kind]
    elif kind == "versus":
        diff = analysis.versus.get(entry.recipe) if analysis else None
        value = 0.0 if analysis and entry is analysis.reference else (diff.mean if diff else None)
    elif kind == "group":
        value = entry.mean(label)
    elif kind == "published":
        value = entry.published.get(label)
    elif kind in entry.compute:
        value = entry.compute[kind].mean
    else:
        return None
    return "" if value is None else f"{value:.6f}"


def _cell_title(entry: Entry, kind: str) -> str | None:
    if kind == "resources" and entry.declaration and entry.declaration.uses:
        return "uses: " + ", ".join(entry.declaration.uses)
    if kind == "recipe":
        source = f"; published: {entry.published_source}" if entry.published_source else ""
        return (f"recipe version {entry.recipe_version}; seeds {' '.join(map(str, entry.seeds))}; task list "
                f"{entry.tasklist} ({entry.tasklist_sha256[:12]}); "
                f"aggregation v{entry.aggregation_version}{source}")
    if kind == "missing" and entry.missing_tasks:
        return ", ".join(entry.missing_tasks)
    return None


def _board_table(section: Section, analysis: Analysis, table_id: str) -> list[str]:
    cols = board_columns(section, analysis)
    head = "".join(_th(header_text(k, label), k not in _TEXT_KINDS) for k, label in cols)
    lines = [(f'<div class="wide"><table class="sortable board" id="{escape(table_id)}">'
              f"<thead><tr>{head}</tr></thead><tbody>")]
    for rank, entry in enumerate(section.entries, 1):
        cells = "".join(_td(cell_text(entry, rank, k, label, analysis),
                            _sort_value(entry, rank, k, label, analysis),
                            k not in _TEXT_KINDS, _cell_title(entry, k)) for k, label in cols)
        lines.append(f'<tr data-rank="{rank}">{cells}</tr>')
    return lines + ["</tbody></table></div>"]


def _oracle_table(section: Section, table_id: str) -> list[str]:
    types = section.noise_types
    head = _th("Recipe", False) + "".join(_th(f"{t} {part}", True) for t in types for part in ("P", "R"))
    head += _th("Clean share of kept", True)
    lines = [(f'<div class="wide"><table class="sortable oracle" id="{escape(table_id)}">'
              f"<thead><tr>{head}</tr></thead><tbody>")]
    for rank, e in enumerate(section.entries, 1):
        cells = [_td(e.recipe, e.recipe, False)]
        for t in types:
            pair = e.oracle.get(t) if e.oracle else None
            for stat in (pair if pair else (None, None)):
                mean = stat.mean if stat else None
                cells.append(_td(fmt_value(mean), "" if mean is None else f"{mean:.6f}", True))
        clean = e.clean_share.mean if e.clean_share else None
        cells.append(_td(fmt_value(clean), "" if clean is None else f"{clean:.6f}", True))
        lines.append(f'<tr data-rank="{rank}">{"".join(cells)}</tr>')
    return lines + ["</tbody></table></div>"]


def _plots(section: Section) -> list[str]:
    """Average vs the primary group, per-group bars, and Average vs scoring compute."""
    colors = svg.colors(len(section.entries))
    series = [svg.Series(rank, e.recipe, colors[rank - 1]) for rank, e in enumerate(section.entries, 1)]
    pairs = list(zip(series, section.entries))
    plots = []
    avg_name = section.entries[0].average_group
    primary = section.entries[0].primary_group
    points = [svg.Point(s, e.mean(primary), e.mean(avg_name), e.groups[avg_name].ci95) for s, e in pairs
              if e.mean(primary) is not None and e.mean(avg_name) is not None]
    if points:
        plots.append(svg.scatter(points, f"{avg_name} vs {primary}", primary, avg_name))
    values = {(s.rank, g): (e.groups[g].mean, e.groups[g].ci95) for s, e in pairs for g in e.group_order
              if e.groups[g].mean is not None}
    if values:
        plots.append(svg.grouped_bars(section.groups, series, values, "Headline groups", "score"))
    cost = [svg.Point(s, e.compute["score_cpu_s"].mean + e.compute["score_gpu_s"].mean, e.mean(avg_name),
                      e.groups[avg_name].ci95) for s, e in pairs
            if None not in (e.compute["score_cpu_s"].mean, e.compute["score_gpu_s"].mean, e.mean(avg_name))]
    if cost:
        plots.append(svg.scatter(cost, f"{avg_name} vs scoring compute",
                                 "scoring CPU+GPU seconds (log scale)", avg_name, log_x=True))
    if not plots:
        return ['<p class="note">No complete scores to plot yet.</p>']
    return ['<div class="plots">'] + plots + ["</div>"]


def _section(view: View, index: int) -> list[str]:
    section, analysis = view.section, view.analysis
    table_id = f"board-{index}"
    lines = [f"<h3>{escape(section_title(section))}</h3>"] + _board_table(section, analysis, table_id)
    lines += _plots(section)
    if section.noise_types:
        lines += ["<h4>Noise detection against the oracle</h4>",
                  ('<p class="note">P: of the uids the method removed, the share of this noise type. '
                   "R: of this noise type's uids, the share removed. \u201cany noise\u201d pools every type "
                   "but clean.</p>")]
        lines += _oracle_table(section, f"oracle-{index}")
    return lines + analysis_html(section, analysis, index)


def _code_spans(text: str) -> str:
    """Markdown code spans of our own (escaped, constant) prose as <code>."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", text)


def render_html(views: list[View], n_records: int) -> str:
    """The whole page as text (deterministic: the same sections give the same bytes)."""
    intro = _code_spans(escape(INTRO.format(dash=DASH)))
    body = [(f"<p>Generated by <code>filterbench leaderboard build</code> from {n_records} run record(s); "
             "do not edit by hand.</p>"),
            f'<p class="note">{intro} Click a column header to sort.</p>']
    if not views:
        body.append("<p>No records yet. A record is added by a pull request; see docs/leaderboard.md.</p>")
    scale = None
    for index, view in enumerate(views):
        if view.section.scale != scale:
            scale = view.section.scale
            body.append(f"<h2>Scale <code>{escape(scale)}</code></h2>")
        body += _section(view, index)
    head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>filterbench leaderboard</title>", f"<style>{_CSS}{ANALYSIS_CSS}</style>", "</head>",
            "<body>",
            "<h1>filterbench leaderboard</h1>"]
    tail = [f"<script>{_SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(head + body + tail) + "\n"
