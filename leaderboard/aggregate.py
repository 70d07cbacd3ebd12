"""From records to board entries: seeds aggregated per recipe and scale, with CIs, compute, published numbers.

One *entry* is every record sharing (scale, official, recipe name, recipe version, task list, aggregation
version); its numbers are means over its seeds.  The 95% confidence interval is the t-distribution half-width
``t(0.975, n-1) * s / sqrt(n)`` with the sample standard deviation ``s``; one seed has no interval.  A mean is
only reported when every seed has the value: averaging the seeds that happen to have it would hide a failure.

Records of different recipe versions never share an entry, and a section ranks only the newest version of each
recipe it has: older versions' entries are kept apart as *superseded* (listed, never ranked or compared), so a
recipe change cannot blend old and new seeds.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from filterbench.harness.errors import FilterbenchError
from filterbench.leaderboard.declarations import UNDECLARED, RecipeDeclaration, recipe_declaration
from filterbench.leaderboard.records import record_order
from filterbench.leaderboard.schema import Record
from filterbench.leaderboard.stats import t_quantile

#: the oracle's noise type for correct pairs; every other type counts as noise
CLEAN = "clean"
#: header of baselines/reference.csv (published numbers, filled in from the papers); ``resources`` is the
#: resource class of the published run, which can differ from the recipe's (a public stand-in for a private
#: model)
REFERENCE_COLUMNS = ("recipe", "scale", "imagenet", "imagenet_dist_shifts", "vtab", "retrieval", "average",
                     "resources", "source")
_NUMBER_COLUMNS = REFERENCE_COLUMNS[2:7]
#: the header before the resources column, still read (its rows have no published resource class)
_LEGACY_COLUMNS = tuple(c for c in REFERENCE_COLUMNS if c != "resources")


class LeaderboardError(FilterbenchError):
    """The board cannot be built (bad reference file) or the committed board is stale."""


# -- statistics ----------------------------------------------------------------------------------------------

def t_quantile_975(dof: int) -> float:
    """The 97.5% quantile of Student's t (the two-sided 95% critical value), to double precision."""
    if dof < 1:
        raise ValueError("dof must be >= 1")
    return t_quantile(0.975, dof)


@dataclass(frozen=True)
class Stat:
    """Mean over ``n`` seeds, sample std and 95% CI half-width (None where undefined or incomplete)."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci95: float | None = None


def summarize(values: list[float | None]) -> Stat:
    """:class:`Stat` of per-seed values; any missing value makes the whole statistic missing."""
    n = len(values)
    if n == 0 or any(v is None for v in values):
        return Stat(n)
    mean = math.fsum(values) / n
    if n == 1:
        return Stat(n, mean)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Stat(n, mean, std, t_quantile_975(n - 1) * std / math.sqrt(n))


# -- published numbers ---------------------------------------------------------------------------------------

def group_slug(group: str) -> str:
    """``ImageNet dist. shifts`` -> ``imagenet_dist_shifts``: how reference.csv names a group's column."""
    return re.sub(r"[^a-z0-9]+", "_", group.lower()).strip("_")


def load_reference(path: str | Path | None) -> dict[tuple[str, str], dict[str, object]]:
    """Published numbers by (recipe, scale): ``{slug: float, "source": str}``; a missing file means none."""
    if path is None or not Path(path).is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) not in (REFERENCE_COLUMNS, _LEGACY_COLUMNS):
            expected = ",".join(REFERENCE_COLUMNS)
            raise LeaderboardError(f"{path}: header must be {expected}, got {reader.fieldnames}")
        table: dict[tuple[str, str], dict[str, object]] = {}
        for line, row in enumerate(reader, start=2):
            key = (row["recipe"], row["scale"])
            if key in table:
                raise LeaderboardError(f"{path}:{line}: second row for recipe {key[0]!r} at scale {key[1]!r}")
            table[key] = {"source": row["source"],
                          "resources": _reference_class(path, line, row.get("resources")),
                          **{c: _reference_value(path, line, c, row[c]) for c in _NUMBER_COLUMNS}}
    return table


def _reference_class(path: str | Path, line: int, text: str | None) -> str | None:
    from filterbench.harness.recipes import RESOURCE_CLASSES

    if text is None or text.strip() == "":
        return None
    if text not in RESOURCE_CLASSES:
        classes = ", ".join(RESOURCE_CLASSES)
        raise LeaderboardError(f"{path}:{line}: resources {text!r} is not one of {classes}")
    return text


def _reference_value(path: str | Path, line: int, column: str, text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise LeaderboardError(f"{path}:{line}: {column} {text!r} is not a number") from None


# -- entries -------------------------------------------------------------------------------------------------

@dataclass
class Entry:
    """One board row: a recipe at a scale, aggregated over its seeds."""

    scale: str
    official: bool
    recipe: str
    recipe_version: int
    tasklist: str
    tasklist_sha256: str
    aggregation_version: int
    seeds: tuple[int, ...]
    group_order: tuple[str, ...]
    average_group: str
    groups: dict[str, Stat]
    compute: dict[str, Stat]  # score_cpu_s, score_gpu_s, sample_cpu_s, train_wall_s
    selection: dict[str, object]  # mode, pool_size, unique_uids (mean), total (mean), max_count (max)
    missing_tasks: tuple[str, ...]
    overrides: tuple[str, ...]
    oracle: dict[str, tuple[Stat, Stat]] | None  # noise type (and "any noise") -> (precision, recall)
    clean_share: Stat | None  # share of clean pairs among the kept uids
    published: dict[str, float] = field(default_factory=dict)
    published_source: str | None = None
    published_resources: str | None = None  # the published run's resource class (reference.csv)
    seed_values: dict[str, dict[int, float]] = field(default_factory=dict)  # group -> seed -> score (paired)
    tasks: dict[str, Stat] = field(default_factory=dict)  # task key -> main metric over seeds
    declaration: RecipeDeclaration | None = None  # the recipe file's current version and resources
    pool_keys: tuple[str, ...] = ()  # the pool artifacts its records were computed on (one, normally)

    @property
    def resources(self) -> str:
        """The recipe's declared resource class, or ``undeclared``."""
        return (self.declaration.resources if self.declaration else None) or UNDECLARED

    @property
    def outdated(self) -> bool:
        """The recipe file has a newer version than these records (a re-run is pending)."""
        return self.declaration is not None and self.declaration.version > self.recipe_version

    @property
    def primary_group(self) -> str | None:
        """The first non-average group (ImageNet for DataComp): the board's second sort key."""
        return next((g for g in self.group_order if g != self.average_group), None)

    def mean(self, group: str | None) -> float | None:
        stat = self.groups.get(group) if group else None
        return stat.mean if stat else None

    def sort_key(self) -> tuple:
        """Average descending, then the primary group descending, then recipe name; missing values last."""
        avg, primary = self.mean(self.average_group), self.mean(self.primary_group)
        return (avg is None, -(avg or 0.0), primary is None, -(primary or 0.0), self.recipe,
                self.recipe_version, self.tasklist_sha256, self.aggregation_version)


def _ordered_union(lists: Iterable[Iterable[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        seen.update((item, None) for item in items if item not in seen)
    return list(seen)


def _scoring(record: Record, attr: str) -> float | None:
    """Seconds spent scoring (every stage named ``score`` or ``score:<scorer>``); no scorer costs 0."""
    stages = [c for stage, c in record.compute.items() if stage.split(":")[0] == "score"]
    values = [getattr(c, attr) for c in stages]
    return None if any(v is None for v in values) else math.fsum(values)


def _oracle_rates(record: Record) -> dict[str, tuple[float | None, float | None]] | None:
    """Per noise type: (precision, recall) of "removed" as a noise detector; "any noise"; "clean share"."""
    if record.oracle is None:
        return None
    removed = {t: c.total - c.kept for t, c in record.oracle.items()}
    removed_all = sum(removed.values())
    kept_all = sum(c.kept for c in record.oracle.values())
    noise = [t for t in sorted(record.oracle) if t != CLEAN]
    rates = {t: (_ratio(removed[t], removed_all), _ratio(removed[t], record.oracle[t].total)) for t in noise}
    noise_removed = sum(removed[t] for t in noise)
    rates["any noise"] = (_ratio(noise_removed, removed_all), _ratio(noise_removed, sum(record.oracle[t].total
                                                                                         for t in noise)))
    clean_kept = record.oracle[CLEAN].kept if CLEAN in record.oracle else None
    rates["clean share"] = (_ratio(clean_kept, kept_all) if clean_kept is not None else None, None)
    return rates


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _entry_oracle(records: list[Record]) -> tuple[dict[str, tuple[Stat, Stat]] | None, Stat | None]:
    per_seed = [_oracle_rates(r) for r in records]
    if all(r is None for r in per_seed):
        return None, None
    names = _ordered_union(sorted(r) for r in per_seed if r is not None)
    stats = {name: tuple(summarize([r.get(name, (None, None))[i] if r else None for r in per_seed])
                         for i in (0, 1)) for name in names}
    clean = stats.pop("clean share", (Stat(len(records)),))[0]
    ordered = {n: stats[n] for n in names if n in stats and n != "any noise"}
    if "any noise" in stats:
        ordered["any noise"] = stats["any noise"]
    return ordered, clean


def _seed_values(records: list[Record], group: str) -> dict[int, float]:
    return {r.seed: r.groups[group] for r in records if r.groups.get(group) is not None}


def _make_entry(records: list[Record], reference: dict, recipes_dir: Path) -> Entry:
    first = records[0]
    order = tuple(_ordered_union(r.group_order for r in records))
    task_keys = _ordered_union(r.metrics for r in records)
    oracle, clean = _entry_oracle(records)
    entry = Entry(
        scale=first.scale, official=first.official, recipe=first.recipe.name,
        recipe_version=first.recipe.version,
        tasklist=first.tasklist.name, tasklist_sha256=first.tasklist.sha256,
        aggregation_version=first.aggregation_version, seeds=tuple(r.seed for r in records),
        group_order=order,
        average_group=first.average_group,
        groups={g: summarize([r.groups.get(g) for r in records]) for g in order},
        compute={"score_cpu_s": summarize([_scoring(r, "cpu_s") for r in records]),
                 "score_gpu_s": summarize([_scoring(r, "gpu_s") for r in records]),
                 "sample_cpu_s": summarize([r.compute["sample"].cpu_s if "sample" in r.compute else None
                                            for r in records]),
                 "train_wall_s": summarize([r.compute["train"].wall_s if "train" in r.compute else None
                                            for r in records])},
        selection={"mode": "/".join(sorted({r.selection.mode for r in records})),
                   "pool_size": max(r.selection.pool_size for r in records),
                   "unique_uids": summarize([float(r.selection.unique_uids) for r in records]).mean,
                   "total": summarize([float(r.selection.total) for r in records]).mean,
                   "max_count": max(r.selection.max_count for r in records)},
        missing_tasks=tuple(sorted({t for r in records for t in r.missing_tasks})),
        overrides=tuple(sorted({k for r in records for k in r.overrides})),
        oracle=oracle, clean_share=clean,
        seed_values={g: _seed_values(records, g) for g in order},
        tasks={t: summarize([r.metrics.get(t) for r in records]) for t in task_keys},
        declaration=recipe_declaration(first.recipe.name, recipes_dir),
        pool_keys=tuple(sorted({r.keys.pool for r in records})))
    published = reference.get((entry.recipe, entry.scale)) if entry.official else None
    if published:
        entry.published = {g: published[group_slug(g)] for g in order
                           if published.get(group_slug(g)) is not None}
        entry.published_source = str(published["source"])
        entry.published_resources = published.get("resources")
    return entry


@dataclass
class Section:
    """The entries of one scale, official or not, in board order, with the columns they need."""

    scale: str
    official: bool
    entries: list[Entry]
    superseded: list[Entry] = field(default_factory=list)  # older recipe versions: listed, never ranked

    @property
    def groups(self) -> list[str]:
        return _ordered_union(e.group_order for e in self.entries)

    @property
    def published_groups(self) -> list[str]:
        return [g for g in self.groups if any(g in e.published for e in self.entries)]

    @property
    def noise_types(self) -> list[str]:
        return _ordered_union(e.oracle for e in self.entries if e.oracle)


def _scale_rank(scale: str) -> tuple:
    from filterbench.harness.scales import SCALES

    names = list(SCALES)
    return (names.index(scale), "") if scale in names else (len(names), scale)


def _split_versions(entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(ranked, superseded): per recipe name, only the entries of its newest recorded version are ranked."""
    newest: dict[str, int] = {}
    for e in entries:
        newest[e.recipe] = max(newest.get(e.recipe, e.recipe_version), e.recipe_version)
    ranked = [e for e in entries if e.recipe_version == newest[e.recipe]]
    superseded = [e for e in entries if e.recipe_version != newest[e.recipe]]
    return ranked, sorted(superseded, key=lambda e: (e.recipe, -e.recipe_version, e.sort_key()))


def board_sections(records: list[Record], reference: dict | None = None,
                   recipes_dir: str | Path | None = None) -> list[Section]:
    """Sections in board order: scales as in the scale table (unknown ones after, by name), official first.

    ``recipes_dir`` (default ``baselines/``) holds the recipe files whose versions and resources it shows.
    """
    from filterbench.harness.recipes import BASELINES_DIR

    folder = Path(recipes_dir) if recipes_dir is not None else BASELINES_DIR
    buckets: dict[tuple, list[Record]] = {}
    for record in sorted(records, key=record_order):
        key = (record.scale, record.official, record.recipe.name, record.recipe.version,
               record.tasklist.sha256, record.aggregation_version)
        buckets.setdefault(key, []).append(record)
    entries = [_make_entry(group, reference or {}, folder) for group in buckets.values()]
    sections = []
    for scale in sorted({e.scale for e in entries}, key=_scale_rank):
        for official in (True, False):
            chosen = [e for e in entries if e.scale == scale and e.official == official]
            ranked, superseded = _split_versions(chosen)
            if ranked:
                sections.append(Section(scale, official, sorted(ranked, key=Entry.sort_key), superseded))
    return sections
