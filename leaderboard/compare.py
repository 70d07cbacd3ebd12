"""``filterbench leaderboard compare A B``: two recipes' paired comparison, every group, in the terminal.

It reads the same sections as the board (newest recipe version of each, superseded ones never), so its numbers
are the board's: the Average row equals the board's Δ column when B is the reference recipe.
"""

from __future__ import annotations

from filterbench.leaderboard.aggregate import Entry, Section
from filterbench.leaderboard.columns import section_title
from filterbench.leaderboard.stats import difference


def _entry(section: Section, recipe: str) -> Entry | None:
    return next((e for e in section.entries if e.recipe == recipe), None)


def comparable_sections(sections: list[Section], a: str, b: str) -> list[tuple[Section, Entry, Entry]]:
    """Every section (scale, official or not) where both recipes have ranked runs."""
    out = []
    for section in sections:
        ea, eb = _entry(section, a), _entry(section, b)
        if ea is not None and eb is not None:
            out.append((section, ea, eb))
    return out


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def compare_lines(section: Section, a: Entry, b: Entry) -> list[str]:
    """A table of A, B and A − B per group with the 95% interval, p-value and verdict; then the seeds."""
    lines = [f"scale {section.scale}, {section_title(section).lower()}: {a.recipe} v{a.recipe_version} − "
             f"{b.recipe} v{b.recipe_version}",
             f"  {'group':<24} {'A':>7} {'B':>7} {'A − B':>8}  {'95% interval':<18} {'p':>7}  verdict"]
    method = None
    for group in [g for g in a.group_order if g in b.group_order]:
        d = difference(a.seed_values.get(group, {}), b.seed_values.get(group, {}))
        if d is None:
            lines.append(f"  {group:<24} {_fmt(a.mean(group)):>7} {_fmt(b.mean(group)):>7} {'—':>8}  "
                         f"{'(fewer than 2 seeds)':<18}")
            continue
        method = method or d
        interval = f"[{d.low:+.3f}, {d.high:+.3f}]"
        verdict = ("A higher" if d.mean > 0 else "B higher") if d.excludes_zero else "not resolved"
        lines.append(f"  {group:<24} {_fmt(a.mean(group)):>7} {_fmt(b.mean(group)):>7} {d.mean:>+8.3f}  "
                     f"{interval:<18} {d.p:>7.4f}  {verdict}")
    if method is not None and method.method == "paired":
        lines.append(f"  paired over seeds {' '.join(map(str, method.seeds))} (t, {method.dof:g} degrees of "
                     "freedom)")
    elif method is not None:
        lines.append("  seeds do not match: Welch's unpaired interval over each recipe's own seeds "
                     f"(A: {' '.join(map(str, a.seeds))}; B: {' '.join(map(str, b.seeds))})")
    avg_a, avg_b = a.seed_values.get(a.average_group, {}), b.seed_values.get(b.average_group, {})
    for seed in sorted(set(avg_a) & set(avg_b)):
        lines.append(f"  seed {seed}: {a.average_group} {avg_a[seed]:.3f} − {avg_b[seed]:.3f} = "
                     f"{avg_a[seed] - avg_b[seed]:+.3f}")
    return lines
