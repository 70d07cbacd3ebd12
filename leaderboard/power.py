"""Resolving power: the smallest difference a board with ``n`` seeds tells from noise; seeds per difference.

Model: a recipe's score with seed ``s`` is ``mu_recipe + u_s + e``, where ``u_s`` is the part of the seed's
effect that every recipe shares (same initialisation and sample order) and ``e`` the recipe's own noise with
standard deviation ``sigma``.  A same-seed difference then has standard deviation ``sigma_d = sqrt(2) sigma``.
``sigma`` is estimated from the residuals of that additive model over a scale's complete recipe x seed table.

A paired comparison over ``n`` seeds calls a difference real when
``|mean d| > t(0.975, n-1) sigma_d / sqrt(n)`` (its 95% interval excludes 0).  That threshold is the
*flagged* difference: a true difference of exactly that size is flagged about half the time.  The *reliably
detected* difference is the one flagged with probability 0.8 (power 80%); the power of the two-sided paired t
test comes from the noncentral t distribution, computed here by quadrature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from filterbench.leaderboard.stats import ALPHA, t_quantile

#: the probability of detection the "reliably detected" difference and the seed counts aim at
POWER = 0.8
#: the seed counts reported stop here ("more than MAX_SEEDS")
MAX_SEEDS = 200


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def paired_power(delta: float, sigma_d: float, n: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t test over ``n`` seeds (level ``alpha``) flags a true ``delta``.

    With ``W = sqrt(V)``, ``V ~ chi2(n-1)``, the test statistic is ``(Z + lam) / (W / sqrt(n-1))`` with
    ``lam = delta sqrt(n) / sigma_d``; the power is the chi-weighted integral of the two normal tails beyond
    ``c W / sqrt(n-1)`` (Simpson's rule over W, whose density is finite for every dof >= 1).
    """
    if n < 2:
        raise ValueError("a paired t test needs at least 2 seeds")
    dof = n - 1
    crit = t_quantile(1 - alpha / 2, dof)
    lam = abs(delta) * math.sqrt(n) / sigma_d
    log_norm = (1 - dof / 2) * math.log(2) - math.lgamma(dof / 2)
    top = math.sqrt(dof) + 12.0  # chi's mass beyond this is below 1e-30 for every dof
    steps = 4000  # even, for Simpson's rule

    def integrand(w: float) -> float:
        if w == 0.0:
            return 0.0 if dof > 1 else math.exp(log_norm) * (_normal_sf(-lam) + _normal_sf(lam))
        density = math.exp(log_norm + (dof - 1) * math.log(w) - w * w / 2)
        cut = crit * w / math.sqrt(dof)
        return density * (_normal_sf(cut - lam) + _normal_sf(cut + lam))

    h = top / steps
    total = integrand(0.0) + integrand(top)
    total += sum((4 if i % 2 else 2) * integrand(i * h) for i in range(1, steps))
    return min(1.0, total * h / 3)


def flagged_difference(sigma_d: float, n: int) -> float:
    """The smallest observed mean difference whose 95% paired interval excludes 0 (at a typical spread)."""
    return t_quantile(1 - ALPHA / 2, n - 1) * sigma_d / math.sqrt(n)


def detectable_difference(sigma_d: float, n: int, power: float = POWER) -> float:
    """The true difference a paired comparison over ``n`` seeds flags with probability ``power``."""
    lo, hi = 0.0, sigma_d
    while paired_power(hi, sigma_d, n) < power:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if paired_power(mid, sigma_d, n) < power else (lo, mid)
    return hi


def seeds_needed(delta: float, sigma_d: float, power: float = POWER) -> int | None:
    """The fewest seeds whose paired comparison flags a true ``delta`` with probability ``power``."""
    if sigma_d == 0.0:
        return 2
    # power grows with n: double to bracket, then bisect
    if paired_power(delta, sigma_d, MAX_SEEDS) < power:
        return None
    lo, hi = 1, 2
    while paired_power(delta, sigma_d, hi) < power:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if paired_power(delta, sigma_d, mid) < power else (lo, mid)
    return max(hi, 2)


@dataclass(frozen=True)
class SeedNoise:
    """Seed noise of one scale's Average, estimated from its complete recipe x seed table."""

    sigma: float  # the recipe's own noise (residual standard deviation of the additive model)
    dof: int  # (recipes - 1) x (seeds - 1)
    sigma_alone: float  # pooled within-recipe standard deviation (shared seed effect included)
    recipes: tuple[str, ...]
    seeds: tuple[int, ...]

    @property
    def sigma_d(self) -> float:
        """Standard deviation of a same-seed difference of two recipes."""
        return math.sqrt(2) * self.sigma


def seed_noise(table: Mapping[str, Mapping[int, float]]) -> SeedNoise | None:
    """Residual and within-recipe spread over the recipes that have every seed of the most common seed set.

    The most common seed set (ties: the larger, then the smaller seeds) fixes the table; recipes with other
    seeds are left out, so the estimate never mixes unpaired rows.  None with fewer than 2 recipes or seeds.
    """
    sets: dict[tuple[int, ...], list[str]] = {}
    for recipe, values in table.items():
        sets.setdefault(tuple(sorted(values)), []).append(recipe)
    if not sets:
        return None
    seeds, recipes = max(sets.items(), key=lambda kv: (len(kv[1]), len(kv[0]), [-s for s in kv[0]]))
    recipes = sorted(recipes)
    if len(recipes) < 2 or len(seeds) < 2:
        return None
    rows = [[table[r][s] for s in seeds] for r in recipes]
    grand = math.fsum(map(math.fsum, rows)) / (len(recipes) * len(seeds))
    row_means = [math.fsum(row) / len(seeds) for row in rows]
    col_means = [math.fsum(row[j] for row in rows) / len(recipes) for j in range(len(seeds))]
    residual = math.fsum((rows[i][j] - row_means[i] - col_means[j] + grand) ** 2
                         for i in range(len(recipes)) for j in range(len(seeds)))
    within = math.fsum((v - row_means[i]) ** 2 for i, row in enumerate(rows) for v in row)
    dof = (len(recipes) - 1) * (len(seeds) - 1)
    return SeedNoise(math.sqrt(residual / dof), dof, math.sqrt(within / (len(recipes) * (len(seeds) - 1))),
                     tuple(recipes), tuple(seeds))
