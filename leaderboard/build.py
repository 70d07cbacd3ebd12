"""``filterbench leaderboard build``: records in; LEADERBOARD.md, leaderboard.csv and leaderboard.html out.

Layout: one set of three files for all scales, one section per scale (scales in the order of the scale table),
each with its official runs first and its unofficial runs (a fixed knob overridden) in a separate section.
``--scale S`` builds a board with only that scale's sections (for a local look; the committed board has all).

Under each official table come the comparisons of :mod:`filterbench.leaderboard.analysis` (paired
differences against a reference recipe, the Holm-corrected pairwise verdicts, resolving power, tasks at chance
and, on nano, the rank agreement with published numbers), rendered from the blocks of
:mod:`filterbench.leaderboard.report`.

The outputs depend on the records, ``baselines/reference.csv``, the recipe files (versions and declared
resources) and the task lists (chance levels) only: no timestamps, paths or host names, a content-defined row
order and fixed number formats, so the same inputs give the same bytes and ``--check`` can compare a fresh
build with the committed files.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filterbench.harness.atomic import write_bytes_atomic
from filterbench.leaderboard.aggregate import (
    Entry,
    LeaderboardError,
    Section,
    Stat,
    board_sections,
    group_slug,
    load_reference,
)
from filterbench.leaderboard.analysis import DEFAULT_REFERENCE_RECIPE, Analysis, analyse
# re-exported: the HTML renderer and the tests import them from here
from filterbench.leaderboard.columns import (  # noqa: F401
    DASH,
    INTRO,
    board_columns,
    cell_text,
    fmt_rates,
    fmt_value,
    header_text,
    md_escape,
    section_title,
)
from filterbench.leaderboard.records import load_records
from filterbench.leaderboard.report import Block, Name, Paragraph, section_blocks

LEADERBOARD_DIR = Path(__file__).resolve().parent
DEFAULT_REFERENCE_CSV = LEADERBOARD_DIR.parent / "baselines" / "reference.csv"
OUTPUT_NAMES = ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html")


@dataclass(frozen=True)
class View:
    """A section with its analysis: what every renderer draws."""

    section: Section
    analysis: Analysis


def reference_recipe(scale: str, against: Mapping[str, str] | None) -> str:
    """The recipe a scale's rows are compared with: ``against[scale]``, ``against[""]`` or the default."""
    against = against or {}
    return against.get(scale) or against.get("") or DEFAULT_REFERENCE_RECIPE


# -- Markdown ------------------------------------------------------------------------------------------------

def _md_table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _md_text(paragraph: Paragraph) -> str:
    # our prose is escaped too: it holds characters such as * and _ that Markdown would read as markup
    return md_escape("".join(s.text if isinstance(s, Name) else s for s in paragraph))


def _md_blocks(blocks: list[Block]) -> list[str]:
    lines = []
    for block in blocks:
        texts = [_md_text(p) for p in block.paragraphs]
        if texts:
            stop = "" if block.title.endswith("?") else "."
            lines += [f"**{block.title}{stop}** {texts[0]}", ""]
            lines += [line for text in texts[1:] for line in (text, "")]
        else:
            lines += [f"**{block.title}:**", ""]
        if block.items:
            lines += [f"- {_md_text(item)}" for item in block.items] + [""]
    return lines


def _md_section(view: View) -> list[str]:
    section, analysis = view.section, view.analysis
    cols = board_columns(section, analysis)
    header = [md_escape(header_text(k, label)) for k, label in cols]
    rows = [[md_escape(cell_text(e, i, k, label, analysis)) for k, label in cols]
            for i, e in enumerate(section.entries, 1)]
    numeric = [k not in ("recipe", "overrides", "resources") for k, _ in cols]
    lines = [f"### {section_title(section)}", ""] + _md_table(header, rows, numeric) + [""]
    if section.noise_types:
        lines += [("Noise detection against the oracle (precision / recall of the removed uids per noise "
                   "type; see docs/leaderboard.md):"), ""]
        header = ["Recipe"] + [md_escape(t) for t in section.noise_types] + ["Clean share of kept"]
        rows = [[md_escape(e.recipe)] + [fmt_rates(e.oracle[t]) if e.oracle and t in e.oracle else DASH
                                         for t in section.noise_types]
                + [fmt_value(e.clean_share.mean if e.clean_share else None)] for e in section.entries]
        lines += _md_table(header, rows, [False] + [True] * (len(header) - 1)) + [""]
    return lines + _md_blocks(section_blocks(section, analysis))


def render_markdown(views: list[View], n_records: int) -> str:
    lines = ["# filterbench leaderboard", "",
             (f"Generated by `filterbench leaderboard build` from {n_records} run record(s); "
              "do not edit by hand (`filterbench leaderboard build --check` fails when it is stale)."), "",
             INTRO.format(dash=DASH), ""]
    if not views:
        lines += ["No records yet. A record is added by a pull request; see `docs/leaderboard.md`.", ""]
    scale = None
    for view in views:
        if view.section.scale != scale:
            scale = view.section.scale
            lines += [f"## Scale `{scale}`", ""]  # a code span needs no escaping; scales are identifiers
        lines += _md_section(view)
    return "\n".join(lines).rstrip("\n") + "\n"


# -- CSV -----------------------------------------------------------------------------------------------------

def _csv_number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _csv_groups(sections: list[Section]) -> list[str]:
    groups: dict[str, str] = {}
    for section in sections:
        for group in section.groups:
            slug = group_slug(group)
            if groups.setdefault(slug, group) != group:
                raise LeaderboardError(f"groups {groups[slug]!r} and {group!r} would share the CSV column "
                                       f"{slug!r}")
    return list(groups.values())


def _csv_versus(entry: Entry, analysis: Analysis) -> list[object]:
    """``versus_*`` columns: the paired (or Welch) difference of the Average against the reference recipe."""
    if analysis.reference is None or entry is analysis.reference:
        return [analysis.reference_name if analysis.reference else "", "", "", "", "", "", ""]
    d = analysis.versus.get(entry.recipe)
    if d is None:
        return [analysis.reference_name, "", "", "", "", "", ""]
    return [analysis.reference_name, d.method, " ".join(map(str, d.seeds)), _csv_number(d.mean, 6),
            _csv_number(d.half_width, 6), _csv_number(d.p, 6), "yes" if d.excludes_zero else "no"]


def _csv_rows(view: View) -> list[tuple[int | str, str, Entry]]:
    ranked = [(rank, "ranked", e) for rank, e in enumerate(view.section.entries, 1)]
    return ranked + [("", "superseded", e) for e in view.section.superseded]


def render_csv(views: list[View]) -> str:
    """One row per entry; group columns are the union over scales (empty where a scale lacks the group)."""
    sections = [v.section for v in views]
    groups = _csv_groups(sections)
    header = ["scale", "section", "rank", "recipe", "recipe_version", "n_seeds", "seeds"]
    for group in groups:
        header += [f"{group_slug(group)}_{part}" for part in ("mean", "std", "ci95", "published")]
    header += ["score_cpu_s", "score_gpu_s", "sample_cpu_s", "train_wall_s", "selection_mode", "pool_size",
               "unique_uids", "total", "max_count", "missing_tasks", "overrides", "tasklist",
               "tasklist_sha256", "aggregation_version", "published_source", "status", "recipe_file_version",
               "resources", "published_resources", "versus_recipe", "versus_method", "versus_seeds",
               "versus_average_diff", "versus_average_ci95", "versus_p", "versus_real"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in header])
    for view in views:
        for rank, status, e in _csv_rows(view):
            row = [e.scale, "official" if e.official else "unofficial", rank, e.recipe, e.recipe_version,
                   len(e.seeds), " ".join(map(str, e.seeds))]
            for group in groups:
                stat = e.groups.get(group, Stat(0))
                row += [_csv_number(stat.mean, 6), _csv_number(stat.std, 6), _csv_number(stat.ci95, 6),
                        _csv_number(e.published.get(group), 6)]
            row += [_csv_number(e.compute[k].mean, 3)
                    for k in ("score_cpu_s", "score_gpu_s", "sample_cpu_s", "train_wall_s")]
            row += [e.selection["mode"], e.selection["pool_size"], _csv_number(e.selection["unique_uids"], 1),
                    _csv_number(e.selection["total"], 1), e.selection["max_count"], " ".join(e.missing_tasks),
                    " ".join(e.overrides), e.tasklist, e.tasklist_sha256, e.aggregation_version,
                    e.published_source or "", status, e.declaration.version if e.declaration else "",
                    e.resources, e.published_resources or ""]
            writer.writerow([csv_cell(c) for c in row + _csv_versus(e, view.analysis)])
    return buffer.getvalue()


#: a spreadsheet treats a cell starting with one of these as a formula (CSV injection, OWASP)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a text starting like a formula gets a leading apostrophe.

    Numbers (``-0.042``) are left as they are; only text from records (recipe names, task keys, overrides)
    can start with ``=`` or ``@``.
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


# -- build and check -----------------------------------------------------------------------------------------

def board_views(records_dir: str | Path | None, scale: str | None = None,
                reference_csv: str | Path | None = None, against: Mapping[str, str] | None = None,
                recipes_dir: str | Path | None = None) -> tuple[list[View], int]:
    """The board's sections with their analyses, and the number of records read."""
    records = load_records(records_dir, scale=scale)
    reference = load_reference(DEFAULT_REFERENCE_CSV if reference_csv is None else reference_csv)
    views = [View(s, analyse(s, reference_recipe(s.scale, against), reference))
             for s in board_sections(records, reference, recipes_dir)]
    return views, len(records)


def render_all(records_dir: str | Path | None, scale: str | None = None,
               reference_csv: str | Path | None = None, against: Mapping[str, str] | None = None,
               recipes_dir: str | Path | None = None) -> dict[str, str]:
    """The three outputs as text, by file name."""
    from filterbench.leaderboard.html import render_html

    views, n_records = board_views(records_dir, scale, reference_csv, against, recipes_dir)
    return {"LEADERBOARD.md": render_markdown(views, n_records),
            "leaderboard.csv": render_csv(views),
            "leaderboard.html": render_html(views, n_records)}


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def build_leaderboard(records_dir: str | Path | None = None, out_dir: str | Path | None = None,
                      scale: str | None = None, reference_csv: str | Path | None = None,
                      against: Mapping[str, str] | None = None,
                      recipes_dir: str | Path | None = None) -> list[Path]:
    """Regenerate the board from records only.

    Args:
        records_dir: folder of records (default: the repository's ``leaderboard/records``).
        out_dir: where to write (default: the repository's ``leaderboard/``).
        scale: build only this scale's sections.
        reference_csv: published numbers (default ``baselines/reference.csv``; a missing file means none).
        against: the reference recipe of the paired comparisons, by scale (key ``""``: every scale); default
            ``clip_score_l14_top30``.
        recipes_dir: the recipe files whose versions and resources the board shows (default ``baselines/``).

    Returns:
        The written paths: ``LEADERBOARD.md``, ``leaderboard.csv``, ``leaderboard.html`` (in that order).
    """
    out = Path(out_dir) if out_dir is not None else LEADERBOARD_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_all(records_dir, scale, reference_csv, against, recipes_dir).items():
        _write_bytes_atomic(out / name, text.encode("utf-8"))
        paths.append(out / name)
    return paths


def check_leaderboard(records_dir: str | Path | None = None, out_dir: str | Path | None = None,
                      scale: str | None = None, reference_csv: str | Path | None = None,
                      against: Mapping[str, str] | None = None,
                      recipes_dir: str | Path | None = None) -> list[Path]:
    """The committed outputs under ``out_dir`` that differ from a fresh build (missing ones included)."""
    out = Path(out_dir) if out_dir is not None else LEADERBOARD_DIR
    with tempfile.TemporaryDirectory(prefix="filterbench-board-") as tmp:
        fresh = build_leaderboard(records_dir, tmp, scale, reference_csv, against, recipes_dir)
        return [out / p.name for p in fresh
                if not (out / p.name).is_file() or (out / p.name).read_bytes() != p.read_bytes()]
