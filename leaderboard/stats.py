"""Statistics behind the board's comparisons: Student's t, paired and Welch intervals, Holm, Kendall's tau-b.

Pure Python (``math`` only), so building the board needs no scipy; ``tests/leaderboard/test_stats.py`` checks
every function here against scipy on fixed inputs.

Why paired: runs with the same seed share the student's initialisation and sample order, so much of a seed's
effect is common to every recipe trained with it.  The difference of two recipes *within* a seed cancels that
shared part; its spread over seeds is what a comparison has to beat, and it is often several times smaller
than the spread of either recipe alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: two-sided level of every interval and test on the board
ALPHA = 0.05


# -- Student's t ---------------------------------------------------------------------------------------------

def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, evaluated by the modified Lentz method."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        # even step d_2m, then odd step d_2m+1 of the fraction 1 / (1 + d_1 / (1 + d_2 / ...))
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return result


def beta_regularized(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                 + b * math.log1p(-x))
    # the fraction converges fast only left of the mode; I_x(a, b) = 1 - I_(1-x)(b, a) covers the rest
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, dof: float) -> float:
    """P(|T| >= |t|) for Student's t with ``dof`` (not necessarily integer) degrees of freedom."""
    if dof <= 0:
        raise ValueError("dof must be > 0")
    return beta_regularized(dof / 2, 0.5, dof / (dof + t * t))


def t_quantile(q: float, dof: float) -> float:
    """The ``q`` quantile (``0.5 < q < 1``) of Student's t with ``dof`` degrees of freedom, by bisection."""
    if not 0.5 < q < 1.0:
        raise ValueError("q must lie in (0.5, 1)")
    target = 2 * (1 - q)  # the two-sided tail mass beyond the quantile
    hi = 1.0
    while t_two_sided_p(hi, dof) > target:
        hi *= 2
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, dof) > target else (lo, mid)
    return (lo + hi) / 2


# -- differences of two recipes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """``a - b`` of one score: its mean, the 95% interval's half-width and the test of "no difference".

    ``method`` is ``paired`` (same-seed differences, ``seeds`` lists them) or ``welch`` (seeds do not match:
    Welch's unequal-variance interval over each recipe's own seeds).
    """

    mean: float
    half_width: float
    dof: float
    p: float
    method: str
    seeds: tuple[int, ...] = ()

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        """The 95% interval lies wholly on one side of 0: the board calls the difference real."""
        return self.low > 0 or self.high < 0


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _from_t(mean: float, se: float, dof: float, method: str, seeds: tuple[int, ...] = ()) -> Difference:
    if se == 0.0:  # identical spreads of zero: the difference is exact, and zero only if the means agree
        return Difference(mean, 0.0, dof, 1.0 if mean == 0.0 else 0.0, method, seeds)
    return Difference(mean, t_quantile(1 - ALPHA / 2, dof) * se, dof, t_two_sided_p(mean / se, dof), method,
                      seeds)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Difference | None:
    """Mean of ``a[s] - b[s]`` over the seeds both have, with its t interval (n - 1 degrees of freedom)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if len(seeds) < 2:
        return None
    mean, var = _mean_var([a[s] - b[s] for s in seeds])
    return _from_t(mean, math.sqrt(var / len(seeds)), len(seeds) - 1, "paired", seeds)


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Difference | None:
    """``mean(a) - mean(b)`` with Welch's interval (Welch-Satterthwaite degrees of freedom)."""
    if len(a) < 2 or len(b) < 2:
        return None
    (mean_a, var_a), (mean_b, var_b) = _mean_var(a), _mean_var(b)
    share_a, share_b = var_a / len(a), var_b / len(b)
    se2 = share_a + share_b
    if se2 == 0.0:
        return _from_t(mean_a - mean_b, 0.0, len(a) + len(b) - 2, "welch")
    dof = se2 ** 2 / (share_a ** 2 / (len(a) - 1) + share_b ** 2 / (len(b) - 1))
    return _from_t(mean_a - mean_b, math.sqrt(se2), dof, "welch")


def difference(a: Mapping[int, float], b: Mapping[int, float]) -> Difference | None:
    """Paired over the shared seeds when there are at least two, else Welch over each recipe's own seeds."""
    return paired_difference(a, b) or welch_difference(list(a.values()), list(b.values()))


# -- many comparisons at once --------------------------------------------------------------------------------

def holm(p_values: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction: adjusted p-values and which hypotheses are rejected at family level alpha.

    The k-th smallest p-value (k from 0) is multiplied by ``m - k`` and the products are made non-decreasing;
    this keeps the chance of *any* false "real difference" in the whole matrix at or below ``alpha``.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p_values[i]))
        adjusted[i] = running
    return adjusted, [p <= alpha for p in adjusted]


# -- rank agreement ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau-b of two scorings of the same items, with the pairs behind it."""

    tau: float | None
    concordant: tuple[tuple[str, str], ...]
    discordant: tuple[tuple[str, str], ...]
    tied: tuple[tuple[str, str], ...]  # tied in either scoring
    tied_x: int = 0  # pairs tied in the first scoring
    tied_y: int = 0  # pairs tied in the second

    def tau_if(self, concordant: int, discordant: int) -> float | None:
        """tau-b had ``concordant`` and ``discordant`` pairs been counted instead (ties unchanged)."""
        n0 = len(self.concordant) + len(self.discordant) + len(self.tied)
        denominator = math.sqrt((n0 - self.tied_x) * (n0 - self.tied_y))
        return (concordant - discordant) / denominator if denominator else None


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def kendall_tau_b(x: Mapping[str, float], y: Mapping[str, float]) -> RankAgreement:
    """Kendall's tau-b over the keys both mappings have: ``(C - D) / sqrt((n0 - n1)(n0 - n2))``.

    ``n0`` counts all pairs, ``n1`` and ``n2`` the pairs tied in ``x`` and in ``y``; without ties it is
    ``(C - D) / n0``.  Pairs are named in the order of ``sorted(keys)``.
    """
    keys = sorted(set(x) & set(y))
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
    kinds: dict[str, list[tuple[str, str]]] = {"c": [], "d": [], "t": []}
    tied_x = tied_y = 0
    for a, b in pairs:
        sx, sy = _sign(x[a] - x[b]), _sign(y[a] - y[b])
        tied_x, tied_y = tied_x + (sx == 0), tied_y + (sy == 0)
        kinds["t" if sx * sy == 0 else ("c" if sx == sy else "d")].append((a, b))
    agreement = RankAgreement(None, tuple(kinds["c"]), tuple(kinds["d"]), tuple(kinds["t"]), tied_x, tied_y)
    tau = agreement.tau_if(len(kinds["c"]), len(kinds["d"]))
    return RankAgreement(tau, agreement.concordant, agreement.discordant, agreement.tied, tied_x, tied_y)
