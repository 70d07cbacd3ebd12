"""The prose under each section's table: what the analysis found, as renderer-neutral blocks.

A block is a title and paragraphs (or list items); a paragraph is a list of segments, where plain strings are
our own constant prose and :class:`Name` wraps text that comes from records (recipe and task names), which
each renderer escapes its own way.  Markdown and HTML render the same blocks, so the two files never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from filterbench.leaderboard.aggregate import Section
from filterbench.leaderboard.analysis import CHANCE_SE, EXAMPLE_DIFFERENCES, Analysis, Prediction
from filterbench.leaderboard.columns import REAL, fmt_diff
from filterbench.leaderboard.power import MAX_SEEDS, POWER


@dataclass(frozen=True)
class Name:
    """Text from a record (a recipe or task name): escaped by the renderer, shown as code."""

    text: str


Segment = str | Name
Paragraph = list[Segment]


@dataclass
class Block:
    title: str
    paragraphs: list[Paragraph] = field(default_factory=list)
    items: list[Paragraph] = field(default_factory=list)  # a bulleted list after the paragraphs


def _ranks(section: Section) -> dict[str, int]:
    return {e.recipe: i for i, e in enumerate(section.entries, 1)}


def versus_block(section: Section, analysis: Analysis) -> Block:
    name = Name(analysis.reference_name)
    if analysis.reference is None:
        return Block("Paired differences", [["No official run of ", name, " at this scale, so the table has "
                                             "no paired-difference column."]])
    return Block("Paired differences", [[
        "Column Δ: the mean over seeds of (recipe − ", name, ") within each seed, ± the half-width of its "
        f"95% t interval (n − 1 degrees of freedom); {REAL} marks an interval that excludes 0, i.e. a "
        "difference the seeds resolve. Same-seed runs share the student's initialisation and sample order, "
        "so pairing removes the part of the seed noise both runs share. (Welch): the two recipes share fewer "
        "than 2 seeds, so the interval is Welch's unpaired one."]])


def resolving_block(analysis: Analysis) -> Block:
    r = analysis.resolving
    if r is None:
        return Block("Resolving power", [["Fewer than 2 recipes share 2 or more seeds: not estimated."]])
    counts = {d: f"more than {MAX_SEEDS}" if n is None else str(n) for d, n in r.seeds_for.items()}
    needed = ", ".join(f"{d:.3f} → {counts[d]}" for d in EXAMPLE_DIFFERENCES)
    seeds = " ".join(map(str, r.noise.seeds))
    return Block("Resolving power", [[
        f"Average over {len(r.noise.recipes)} recipes × seeds {seeds}: the recipes' own seed noise is "
        f"σ = {r.noise.sigma:.4f} (residual of recipe + seed effects, {r.noise.dof} degrees of freedom), so "
        f"a same-seed difference has σ_d = √2 σ = {r.noise.sigma_d:.4f}. With {r.n} seeds a paired "
        f"comparison calls a difference real from about ±{r.flagged:.3f} (unpaired: "
        f"±{r.flagged_unpaired:.3f}), and detects a true difference of {r.detectable:.3f} with {POWER:.0%} "
        f"probability. Seeds needed for {POWER:.0%} power: {needed}."]])


def pairwise_block(section: Section, analysis: Analysis) -> Block:
    pw = analysis.pairwise
    ranks = _ranks(section)
    real = [pair for pair, ok in pw.real.items() if ok] if pw else []
    block = Block("Which differences are real", [[
        "Every pair on the Average (paired t, else Welch), Holm-corrected over all "
        f"{len(pw.real) if pw else 0} pair(s) at 5% family-wise error: {len(real)} pair(s) differ."]])
    above: dict[str, list[str]] = {}
    for a, b in real:
        d = pw.differences[(a, b)]
        high, low = (a, b) if d.mean > 0 else (b, a)
        above.setdefault(high, []).append(low)
    for recipe, lows in sorted(above.items(), key=lambda kv: ranks[kv[0]]):
        item: Paragraph = [f"#{ranks[recipe]} ", Name(recipe), " is above "]
        for i, low in enumerate(sorted(lows, key=ranks.get)):
            item += [", " if i else "", f"#{ranks[low]} ", Name(low)]
        block.items.append(item)
    return block


def chance_block(analysis: Analysis) -> Block:
    if not analysis.tasks:
        return Block("Tasks at chance", [["The records' task list was not found: chance levels unknown."]])
    flat = [t for t in analysis.tasks if t.at_chance]
    unknown = [t for t in analysis.tasks if t.at_chance is None]
    par: Paragraph = [f"Tasks no recipe lifts more than {CHANCE_SE:g} binomial standard errors above chance "
                      "(they add noise and no signal to the Average): "]
    par += _names([t.key for t in flat]) if flat else ["none"]
    par.append(".")
    if unknown:
        par += [" No chance level in the task list: "] + _names([t.key for t in unknown]) + ["."]
    return Block("Tasks at chance", [par])


def _names(names: list[str]) -> Paragraph:
    out: Paragraph = []
    for i, name in enumerate(names):
        out += ([", "] if i else []) + [Name(name)]
    return out


def _prediction_paragraphs(p: Prediction) -> list[Paragraph]:
    a = p.agreement
    n = len(a.concordant) + len(a.discordant) + len(a.tied)
    first: Paragraph = [f"DataComp {p.scale}: Kendall's tau-b over {_recipes_in(a)} recipes = "
                        f"{'—' if a.tau is None else f'{a.tau:.3f}'} ({len(a.concordant)} concordant pairs, "
                        f"{len(a.discordant)} discordant, {len(a.tied)} tied"]
    for x, y in a.tied:
        first += [": " if (x, y) == a.tied[0] else "; ", Name(x), " = ", Name(y)]
    first.append(f"; {n} pairs).")
    open_pairs = [pair for pair, d in p.differences.items() if d is None or not d.excludes_zero]
    if p.tau_low is not None:
        first.append(f" Within the seed intervals ({len(open_pairs)} pair(s) whose paired interval includes "
                     f"0 could go either way) tau-b lies between {p.tau_low:.3f} and {p.tau_high:.3f}.")
    items = [[Name(x), " − ", Name(y), f": {fmt_diff(p.differences[(x, y)])} here, "
              f"{p.published[x] - p.published[y]:+.3f} published"] for x, y in a.discordant]
    return [first] + ([["Discordant pairs: "] + _join_items(items)] if items else [])


def _recipes_in(agreement) -> int:
    names = {x for pair in agreement.concordant + agreement.discordant + agreement.tied for x in pair}
    return len(names)


def _join_items(items: list[Paragraph]) -> Paragraph:
    out: Paragraph = []
    for i, item in enumerate(items):
        out += (["; "] if i else []) + item
    return out + ["."]


def prediction_block(analysis: Analysis) -> Block:
    block = Block("Does nano predict real scale?", [[
        "Rank agreement of this board's Averages with the published DataComp Averages of the same recipes "
        "(baselines/reference.csv): 1 is the same order, 0 no relation."]])
    for p in analysis.predictions:
        block.paragraphs += _prediction_paragraphs(p)
    return block


def version_block(section: Section) -> Block | None:
    """Older recipe versions kept apart, and recipe files newer than their records."""
    outdated = [e for e in section.entries if e.outdated]
    if not outdated and not section.superseded:
        return None
    block = Block("Recipe versions")
    for e in outdated:
        block.items.append([Name(e.recipe), f": the records are version {e.recipe_version}, the recipe file "
                            f"is version {e.declaration.version}; ranked on the old version until it is "
                            "re-run."])
    for e in section.superseded:
        avg = e.groups.get(e.average_group)
        mean = "—" if avg is None or avg.mean is None else f"{avg.mean:.3f}"
        block.items.append([Name(e.recipe), f" version {e.recipe_version} ({len(e.seeds)} seed(s), Average "
                            f"{mean}): superseded by a newer version's records; not ranked or compared."])
    return block


def pool_block(section: Section) -> Block | None:
    """Which recipes ran on which build of the pool, when a section's records come from more than one.

    A world rebuilt from the same seed is byte-identical only on the same kind of CPU and library versions; a
    build on another machine gets another pool key (its stored features differ in the last bits), and its
    trainings differ in rounding too.  Such records are still ranked together, so the board says so.
    """
    by_pool: dict[str, list[str]] = {}
    for e in section.entries:
        for key in e.pool_keys:
            by_pool.setdefault(key, []).append(e.recipe)
    if len(by_pool) < 2:
        return None
    block = Block("Pool builds", [[f"The records of this section come from {len(by_pool)} builds of the pool "
                                   "(different pool keys: the same world rebuilt on machines whose float "
                                   "kernels differ, or a different pool). Differences between recipes of "
                                   "different builds include that difference; docs/leaderboard.md says how "
                                   "large it was measured."]])
    for key, recipes in sorted(by_pool.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        segments: Paragraph = [f"pool {key}: "]
        for i, recipe in enumerate(recipes):
            segments += ([", "] if i else []) + [Name(recipe)]
        block.items.append(segments)
    return block


def section_blocks(section: Section, analysis: Analysis) -> list[Block]:
    """The blocks printed under a section's table, in order (none for an unofficial section)."""
    blocks = [b for b in (version_block(section), pool_block(section)) if b]
    if not section.official:
        return blocks
    blocks += [versus_block(section, analysis), resolving_block(analysis), pairwise_block(section, analysis),
               chance_block(analysis)]
    if analysis.predictions:
        blocks.append(prediction_block(analysis))
    return blocks
