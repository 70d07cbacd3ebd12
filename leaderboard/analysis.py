"""What a section's numbers can and cannot tell apart: paired comparisons, the Holm matrix, resolving power,
tasks at chance, and the rank agreement of a nano board with published DataComp numbers.

Everything here runs on the Average (the board's sort key) of a section's ranked entries; superseded recipe
versions never enter.  Comparisons are made for official sections only: unofficial runs override different
knobs, so two of them need not be comparable at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from filterbench.leaderboard.aggregate import Entry, Section
from filterbench.leaderboard.declarations import TaskInfo, tasklist_tasks
from filterbench.leaderboard.power import (
    POWER,
    SeedNoise,
    detectable_difference,
    flagged_difference,
    seed_noise,
    seeds_needed,
)
from filterbench.leaderboard.stats import (
    Difference,
    RankAgreement,
    difference,
    holm,
    kendall_tau_b,
    t_quantile,
)

#: the recipe every other one is compared with, per scale, unless the build names another
DEFAULT_REFERENCE_RECIPE = "clip_score_l14_top30"
#: true differences of the Average whose seed counts the resolving-power line reports
EXAMPLE_DIFFERENCES = (0.005, 0.01, 0.02, 0.05)
#: binomial standard errors above chance a task's mean must reach before it counts as off chance
CHANCE_SE = 3.0
#: published scales the nano ranking is compared with
PUBLISHED_SCALES = ("small", "medium")


@dataclass(frozen=True)
class Pairwise:
    """Every pair of ranked entries: row minus column difference, Holm-adjusted p, verdict."""

    recipes: tuple[str, ...]  # board order
    differences: dict[tuple[str, str], Difference]  # (row, column) for row before column in board order
    adjusted: dict[tuple[str, str], float]
    real: dict[tuple[str, str], bool]  # the difference survives Holm's correction at 5%

    def get(self, a: str, b: str) -> tuple[Difference, float, bool] | None:
        """``a - b`` (either order), its Holm-adjusted p and verdict; None when not computable."""
        sign = 1.0
        if (a, b) not in self.differences:
            a, b, sign = b, a, -1.0
        if (a, b) not in self.differences:
            return None
        d = self.differences[(a, b)]
        flipped = Difference(sign * d.mean, d.half_width, d.dof, d.p, d.method, d.seeds)
        return flipped, self.adjusted[(a, b)], self.real[(a, b)]


@dataclass(frozen=True)
class Resolving:
    """Resolving power of a section's Average with the seeds it has."""

    noise: SeedNoise
    n: int  # seeds per recipe in the table
    flagged: float  # paired: an observed difference this large has an interval excluding 0
    flagged_unpaired: float  # the same for unpaired (Welch-like) comparisons of two recipes
    detectable: float  # paired: a true difference this large is flagged with probability POWER
    seeds_for: dict[float, int | None]  # true difference -> seeds needed for POWER (None: > MAX_SEEDS)


@dataclass(frozen=True)
class TaskChance:
    """One task: its chance level and whether any ranked recipe left it (None: chance unknown)."""

    key: str
    info: TaskInfo
    off_chance: tuple[str, ...]  # recipes whose mean is CHANCE_SE binomial standard errors above chance

    @property
    def at_chance(self) -> bool | None:
        return None if self.info.chance is None or self.info.size is None else not self.off_chance


@dataclass(frozen=True)
class Prediction:
    """Rank agreement of this section's Averages with a published scale's Averages."""

    scale: str
    agreement: RankAgreement
    published: dict[str, float]  # recipe -> published Average at that scale
    differences: dict[tuple[str, str], Difference | None]  # this board's paired difference per pair
    tau_low: float | None  # every pair the seed intervals leave open turned discordant
    tau_high: float | None  # ... turned concordant


@dataclass
class Analysis:
    """The comparisons of one official section."""

    reference: Entry | None
    reference_name: str
    versus: dict[str, Difference | None] = field(default_factory=dict)  # recipe -> recipe - reference
    pairwise: Pairwise | None = None
    resolving: Resolving | None = None
    tasks: list[TaskChance] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)


def _average(entry: Entry) -> dict[int, float]:
    return entry.seed_values.get(entry.average_group, {})


def _versus(section: Section, reference: Entry | None) -> dict[str, Difference | None]:
    if reference is None:
        return {}
    return {e.recipe: difference(_average(e), _average(reference))
            for e in section.entries if e is not reference}


def pairwise(entries: list[Entry]) -> Pairwise:
    """Paired (else Welch) differences of every pair, Holm-corrected over all computable pairs."""
    diffs = {}
    for i, a in enumerate(entries):
        for b in entries[i + 1:]:
            d = difference(_average(a), _average(b))
            if d is not None:
                diffs[(a.recipe, b.recipe)] = d
    keys = list(diffs)
    adjusted, real = holm([diffs[k].p for k in keys])
    return Pairwise(tuple(e.recipe for e in entries), diffs, dict(zip(keys, adjusted)), dict(zip(keys, real)))


def resolving_power(entries: list[Entry]) -> Resolving | None:
    """From the residual seed noise of the section's complete recipe x seed table (None: too few)."""
    noise = seed_noise({e.recipe: _average(e) for e in entries if len(_average(e)) >= 2})
    if noise is None:
        return None
    n = len(noise.seeds)
    unpaired = t_quantile(0.975, 2 * n - 2) * noise.sigma_alone * math.sqrt(2 / n)
    if noise.sigma == 0.0:
        return Resolving(noise, n, 0.0, unpaired, 0.0, {d: 2 for d in EXAMPLE_DIFFERENCES})
    return Resolving(noise, n, flagged_difference(noise.sigma_d, n), unpaired,
                     detectable_difference(noise.sigma_d, n, POWER),
                     {d: seeds_needed(d, noise.sigma_d, POWER) for d in EXAMPLE_DIFFERENCES})


def task_chance(entries: list[Entry]) -> list[TaskChance]:
    """Per task of the section's task list: which recipes' means sit clearly above chance.

    A guessing model's accuracy on ``size`` items has standard error ``sqrt(p (1 - p) / size)`` at chance
    ``p``; over ``n`` seeds the mean's is that over ``sqrt(n)``.  A recipe leaves chance on a task when its
    mean exceeds ``p`` by CHANCE_SE of those.  Tasks no recipe leaves add noise and no signal to the Average.
    """
    sha = entries[0].tasklist_sha256 if entries else None
    infos = tasklist_tasks(sha) if sha else None
    if not infos:
        return []
    same = [e for e in entries if e.tasklist_sha256 == sha]  # a task's chance belongs to its task list
    out = []
    for key, info in infos.items():
        above = []
        for e in same:
            stat = e.tasks.get(key)
            if None in (info.chance, info.size) or stat is None or stat.mean is None:
                continue
            se = math.sqrt(info.chance * (1 - info.chance) / (info.size * stat.n))
            if stat.mean > info.chance + CHANCE_SE * se:
                above.append(e.recipe)
        out.append(TaskChance(key, info, tuple(above)))
    return out


def _tau_bounds(agreement: RankAgreement,
                open_pairs: set[tuple[str, str]]) -> tuple[float | None, float | None]:
    """tau-b had every open pair (not tied in either scoring) gone the worst way, and the best way."""
    c, d = len(agreement.concordant), len(agreement.discordant)
    open_c = sum(p in open_pairs for p in agreement.concordant)
    open_d = sum(p in open_pairs for p in agreement.discordant)
    return agreement.tau_if(c - open_c, d + open_c), agreement.tau_if(c + open_d, d - open_d)


def predictions(section: Section, reference_table: dict) -> list[Prediction]:
    """Kendall's tau-b of this section's Averages against each published scale's (recipes with both)."""
    entries = {e.recipe: e for e in section.entries if e.mean(e.average_group) is not None}
    out = []
    for scale in PUBLISHED_SCALES:
        published = {name: row["average"] for (name, s), row in reference_table.items()
                     if s == scale and name in entries and row.get("average") is not None}
        if len(published) < 3:
            continue
        board = {name: entries[name].mean(entries[name].average_group) for name in published}
        agreement = kendall_tau_b(board, published)
        diffs = {pair: difference(_average(entries[pair[0]]), _average(entries[pair[1]]))
                 for pair in agreement.concordant + agreement.discordant}
        open_pairs = {p for p, d in diffs.items() if d is None or not d.excludes_zero}
        low, high = _tau_bounds(agreement, open_pairs)
        out.append(Prediction(scale, agreement, published, diffs, low, high))
    return out


def is_nano(scale: str) -> bool:
    """Scales on the synthetic nano world (whose ranking is what the published numbers test)."""
    return scale.startswith("nano")


def analyse(section: Section, reference_name: str = DEFAULT_REFERENCE_RECIPE,
            reference_table: dict | None = None) -> Analysis:
    """The comparisons of an official section (an unofficial one gets an empty :class:`Analysis`)."""
    reference = next((e for e in section.entries if e.recipe == reference_name), None)
    if not section.official:
        return Analysis(None, reference_name)
    return Analysis(
        reference, reference_name, _versus(section, reference), pairwise(section.entries),
        resolving_power(section.entries), task_chance(section.entries),
        predictions(section, reference_table or {}) if is_nano(section.scale) else [])
