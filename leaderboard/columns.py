"""The board table's columns and cell texts, shared by the Markdown and HTML renderers, in fixed formats.

Formats are fixed (3 decimals, no locale), so the same entries always give the same bytes.
"""

from __future__ import annotations

import html
import re

from filterbench.leaderboard.aggregate import Entry, Section, Stat
from filterbench.leaderboard.analysis import Analysis
from filterbench.leaderboard.stats import Difference

DASH = "—"
#: marks a difference whose 95% interval excludes 0
REAL = "*"

INTRO = ("Scores are fractions in [0, 1]: the mean over seeds ± the half-width of its 95% confidence "
         "interval (t-distribution with n-1 degrees of freedom; {dash} with one seed). Published numbers "
         "(pub.) come from `baselines/reference.csv`. Compute columns are means over seeds: scoring CPU "
         "and GPU seconds (every `score` stage) and training wall seconds. Unofficial runs changed a "
         "fixed knob and are listed apart.")


# -- number and text formats (fixed, so outputs are byte-stable) ---------------------------------------------

def fmt_score(stat: Stat | None) -> str:
    if stat is None or stat.mean is None:
        return DASH
    return f"{stat.mean:.3f} ± {DASH if stat.ci95 is None else f'{stat.ci95:.3f}'}"


def fmt_value(value: float | None, digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def fmt_seconds(stat: Stat | None) -> str:
    if stat is None or stat.mean is None:
        return DASH
    return f"{stat.mean:.1f}" if stat.mean < 10_000 else f"{stat.mean:,.0f}"


def fmt_count(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


def fmt_rates(pair: tuple[Stat, Stat]) -> str:
    """An oracle cell: ``precision / recall``."""
    return f"{fmt_value(pair[0].mean)} / {fmt_value(pair[1].mean)}"


def fmt_diff(diff: Difference | None) -> str:
    """``+0.052 ± 0.008 *``: mean difference, 95% half-width, the marker when the interval excludes 0."""
    if diff is None:
        return DASH
    text = f"{diff.mean:+.3f} ± {diff.half_width:.3f}"
    text += f" {REAL}" if diff.excludes_zero else ""
    return text + (" (Welch)" if diff.method == "welch" else "")


def md_escape(text: str) -> str:
    """Record text made inert in Markdown: markup characters backslash-escaped, HTML entities for ``<>&``."""
    # inside a table cell only these can start markup; `(`, `#`, `!` matter only after an escaped `]` or at
    # the start of a line, which a cell never is
    text = re.sub(r"([\\`*_\[\]|~])", r"\\\1", " ".join(str(text).split()))
    return html.escape(text, quote=False)


def section_title(section: Section) -> str:
    return "Official runs" if section.official else "Unofficial runs (a fixed knob was overridden)"


# -- columns -------------------------------------------------------------------------------------------------

def versus_label(section: Section, analysis: Analysis) -> str:
    return f"Δ {section.entries[0].average_group} vs {analysis.reference_name}"


def board_columns(section: Section, analysis: Analysis | None = None) -> list[tuple[str, str]]:
    """(kind, label) of the main table's columns; shared by the Markdown and the HTML table.

    With an analysis whose reference recipe ran at this scale, the paired difference against it follows the
    Average column.
    """
    cols = [("rank", "#"), ("recipe", "Recipe"), ("version", "v"), ("resources", "Resources"),
            ("seeds", "Seeds")]
    average = section.entries[0].average_group
    for group in section.groups:
        cols.append(("group", group))
        if group == average and analysis is not None and analysis.reference is not None:
            cols.append(("versus", versus_label(section, analysis)))
    cols += [("published", g) for g in section.published_groups]
    cols += [("score_cpu_s", "Scoring CPU s"), ("score_gpu_s", "Scoring GPU s"),
             ("sample_cpu_s", "Sampling CPU s"), ("train_wall_s", "Train wall s"),
             ("unique_uids", "Kept uids"), ("total", "Samples"), ("max_count", "Max repeats"),
             ("missing", "Missing tasks")]
    if not section.official:
        cols.append(("overrides", "Overrides"))
    return cols


def _version_text(entry: Entry) -> str:
    """The records' recipe version; ``1 (now 2)`` when the recipe file has moved on (re-run pending)."""
    if entry.outdated:
        return f"{entry.recipe_version} (now {entry.declaration.version})"
    return str(entry.recipe_version)


def _resources_text(entry: Entry) -> str:
    """The recipe's class, and the published run's when it differs (a stand-in for a private resource)."""
    published = entry.published_resources
    if published and published != entry.resources:
        return f"{entry.resources} (pub.: {published})"
    return entry.resources


def _versus_text(entry: Entry, analysis: Analysis | None) -> str:
    if analysis is None:
        return DASH
    if entry is analysis.reference:
        return "reference"
    return fmt_diff(analysis.versus.get(entry.recipe))


def cell_text(entry: Entry, rank: int, kind: str, label: str, analysis: Analysis | None = None) -> str:
    """The displayed (unescaped) text of one cell."""
    simple = {"rank": str(rank), "recipe": entry.recipe, "version": _version_text(entry),
              "resources": _resources_text(entry), "seeds": str(len(entry.seeds)),
              "unique_uids": fmt_count(entry.selection["unique_uids"]),
              "total": fmt_count(entry.selection["total"]),
              "max_count": str(entry.selection["max_count"]), "missing": str(len(entry.missing_tasks)),
              "overrides": ", ".join(entry.overrides) or DASH}
    if kind in simple:
        return simple[kind]
    if kind == "versus":
        return _versus_text(entry, analysis)
    if kind == "group":
        return fmt_score(entry.groups.get(label))
    if kind == "published":
        return fmt_value(entry.published.get(label))
    return fmt_seconds(entry.compute[kind])


def header_text(kind: str, label: str) -> str:
    return f"{label} (pub.)" if kind == "published" else label
