"""``filterbench leaderboard build``: records in; LEADERBOARD.md, leaderboard.csv and leaderboard.html out.

Layout: one set of three files for all scales, one section per scale (scales in the order of the scale table),
each with its official runs first and its unofficial runs (a fixed knob overridden) in a separate section.
``--scale S`` builds a board with only that scale's sections (for a local look; the committed board has all).

The outputs depend on the records and ``baselines/reference.csv`` only: no timestamps, paths or host names, a
content-defined row order and fixed number formats, so the same records give the same bytes and ``--check``
can compare a fresh build with the committed files.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import tempfile
from pathlib import Path

from filterbench.leaderboard.aggregate import (
    Entry,
    LeaderboardError,
    Section,
    Stat,
    board_sections,
    group_slug,
    load_reference,
)
from filterbench.leaderboard.records import load_records

LEADERBOARD_DIR = Path(__file__).resolve().parent
DEFAULT_REFERENCE_CSV = LEADERBOARD_DIR.parent / "baselines" / "reference.csv"
OUTPUT_NAMES = ("LEADERBOARD.md", "leaderboard.csv", "leaderboard.html")
DASH = "—"

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


def md_escape(text: str) -> str:
    """Record text made inert in Markdown: markup characters backslash-escaped, HTML entities for ``<>&``."""
    # inside a table cell only these can start markup; `(`, `#`, `!` matter only after an escaped `]` or at
    # the start of a line, which a cell never is
    text = re.sub(r"([\\`*_\[\]|~])", r"\\\1", " ".join(str(text).split()))
    return html.escape(text, quote=False)


def section_title(section: Section) -> str:
    return "Official runs" if section.official else "Unofficial runs (a fixed knob was overridden)"


def board_columns(section: Section) -> list[tuple[str, str]]:
    """(kind, label) of the main table's columns; shared by the Markdown and the HTML table."""
    cols = [("rank", "#"), ("recipe", "Recipe"), ("version", "v"), ("seeds", "Seeds")]
    cols += [("group", g) for g in section.groups]
    cols += [("published", g) for g in section.published_groups]
    cols += [("score_cpu_s", "Scoring CPU s"), ("score_gpu_s", "Scoring GPU s"), ("sample_cpu_s", "Sampling CPU s"),
             ("train_wall_s", "Train wall s"), ("unique_uids", "Kept uids"), ("max_count", "Max repeats"),
             ("missing", "Missing tasks")]
    if not section.official:
        cols.append(("overrides", "Overrides"))
    return cols


def cell_text(entry: Entry, rank: int, kind: str, label: str) -> str:
    """The displayed (unescaped) text of one cell."""
    simple = {"rank": str(rank), "recipe": entry.recipe, "version": str(entry.recipe_version),
              "seeds": str(len(entry.seeds)), "unique_uids": fmt_count(entry.selection["unique_uids"]),
              "max_count": str(entry.selection["max_count"]), "missing": str(len(entry.missing_tasks)),
              "overrides": ", ".join(entry.overrides) or DASH}
    if kind in simple:
        return simple[kind]
    if kind == "group":
        return fmt_score(entry.groups.get(label))
    if kind == "published":
        return fmt_value(entry.published.get(label))
    return fmt_seconds(entry.compute[kind])


def header_text(kind: str, label: str) -> str:
    return f"{label} (pub.)" if kind == "published" else label


# -- Markdown ------------------------------------------------------------------------------------------------

def _md_table(header: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _md_section(section: Section) -> list[str]:
    cols = board_columns(section)
    header = [md_escape(header_text(k, label)) for k, label in cols]
    rows = [[md_escape(cell_text(e, i, k, label)) for k, label in cols]
            for i, e in enumerate(section.entries, 1)]
    numeric = [k not in ("recipe", "overrides") for k, _ in cols]
    lines = [f"### {section_title(section)}", ""] + _md_table(header, rows, numeric) + [""]
    if section.noise_types:
        lines += [("Noise detection against the oracle (precision / recall of the removed uids per noise "
                   "type; see docs/leaderboard.md):"), ""]
        header = ["Recipe"] + [md_escape(t) for t in section.noise_types] + ["Clean share of kept"]
        rows = [[md_escape(e.recipe)] + [fmt_rates(e.oracle[t]) if e.oracle and t in e.oracle else DASH
                                         for t in section.noise_types]
                + [fmt_value(e.clean_share.mean if e.clean_share else None)] for e in section.entries]
        lines += _md_table(header, rows, [False] + [True] * (len(header) - 1)) + [""]
    return lines


def render_markdown(sections: list[Section], n_records: int) -> str:
    lines = ["# filterbench leaderboard", "",
             (f"Generated by `filterbench leaderboard build` from {n_records} run record(s); "
              "do not edit by hand (`filterbench leaderboard build --check` fails when it is stale)."), "",
             INTRO.format(dash=DASH), ""]
    if not sections:
        lines += ["No records yet. A record is added by a pull request; see `docs/leaderboard.md`.", ""]
    scale = None
    for section in sections:
        if section.scale != scale:
            scale = section.scale
            lines += [f"## Scale `{scale}`", ""]  # a code span needs no escaping; scales are identifiers
        lines += _md_section(section)
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


def render_csv(sections: list[Section]) -> str:
    """One row per entry; group columns are the union over scales (empty where a scale lacks the group)."""
    groups = _csv_groups(sections)
    header = ["scale", "section", "rank", "recipe", "recipe_version", "n_seeds", "seeds"]
    for group in groups:
        header += [f"{group_slug(group)}_{part}" for part in ("mean", "std", "ci95", "published")]
    header += ["score_cpu_s", "score_gpu_s", "sample_cpu_s", "train_wall_s", "selection_mode", "pool_size", "unique_uids",
               "total", "max_count", "missing_tasks", "overrides", "tasklist", "tasklist_sha256",
               "aggregation_version", "published_source"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for section in sections:
        for rank, e in enumerate(section.entries, 1):
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
                    e.published_source or ""]
            writer.writerow(row)
    return buffer.getvalue()


# -- build and check -----------------------------------------------------------------------------------------

def render_all(records_dir: str | Path | None, scale: str | None = None,
               reference_csv: str | Path | None = None) -> dict[str, str]:
    """The three outputs as text, by file name."""
    from filterbench.leaderboard.html import render_html

    records = load_records(records_dir, scale=scale)
    reference = load_reference(DEFAULT_REFERENCE_CSV if reference_csv is None else reference_csv)
    sections = board_sections(records, reference)
    return {"LEADERBOARD.md": render_markdown(sections, len(records)),
            "leaderboard.csv": render_csv(sections),
            "leaderboard.html": render_html(sections, len(records))}


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_leaderboard(records_dir: str | Path | None = None, out_dir: str | Path | None = None,
                      scale: str | None = None, reference_csv: str | Path | None = None) -> list[Path]:
    """Regenerate the board from records only.

    Args:
        records_dir: folder of records (default: the repository's ``leaderboard/records``).
        out_dir: where to write (default: the repository's ``leaderboard/``).
        scale: build only this scale's sections.
        reference_csv: published numbers (default ``baselines/reference.csv``; a missing file means none).

    Returns:
        The written paths: ``LEADERBOARD.md``, ``leaderboard.csv``, ``leaderboard.html`` (in that order).
    """
    out = Path(out_dir) if out_dir is not None else LEADERBOARD_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_all(records_dir, scale, reference_csv).items():
        _write_bytes_atomic(out / name, text.encode("utf-8"))
        paths.append(out / name)
    return paths


def check_leaderboard(records_dir: str | Path | None = None, out_dir: str | Path | None = None,
                      scale: str | None = None, reference_csv: str | Path | None = None) -> list[Path]:
    """The committed outputs under ``out_dir`` that differ from a fresh build (missing ones included)."""
    out = Path(out_dir) if out_dir is not None else LEADERBOARD_DIR
    with tempfile.TemporaryDirectory(prefix="filterbench-board-") as tmp:
        fresh = build_leaderboard(records_dir, tmp, scale, reference_csv)
        return [out / p.name for p in fresh
                if not (out / p.name).is_file() or (out / p.name).read_bytes() != p.read_bytes()]
