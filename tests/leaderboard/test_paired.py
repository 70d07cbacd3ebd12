"""Paired and Welch intervals, Holm, Kendall's tau-b and resolving power, against scipy and a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as scipy_stats
from filterbench.leaderboard import power, stats


# fixed per-seed Averages of three recipes (seeds 0, 1, 2): A and B share most of each seed's effect
A = {0: 0.4430, 1: 0.4331, 2: 0.4452}
B = {0: 0.3940, 1: 0.3823, 2: 0.3898}
C = {0: 0.3015, 1: 0.2692, 2: 0.2808}


@pytest.mark.parametrize("dof", [1, 2, 2.5, 3.7, 10, 57.25])
def test_t_distribution_matches_scipy(dof):
    for t in (0.0, 0.3, 1.0, 2.5, 8.0, 60.0):
        expected = 2 * scipy_stats.t.sf(t, dof)
        assert stats.t_two_sided_p(t, dof) == pytest.approx(expected, rel=1e-10, abs=1e-300)
    for q in (0.6, 0.9, 0.975, 0.995):
        assert stats.t_quantile(q, dof) == pytest.approx(scipy_stats.t.ppf(q, dof), rel=1e-11)


def test_paired_difference_matches_scipy_ttest_rel():
    d = stats.paired_difference(A, B)
    ref = scipy_stats.ttest_rel([A[s] for s in range(3)], [B[s] for s in range(3)])
    low, high = ref.confidence_interval(0.95)
    assert (d.method, d.seeds, d.dof) == ("paired", (0, 1, 2), 2)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (d.low, d.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    assert d.excludes_zero


def test_paired_uses_only_shared_seeds():
    d = stats.paired_difference({**A, 7: 0.9}, B)
    ref = scipy_stats.ttest_rel([A[s] for s in range(3)], [B[s] for s in range(3)])
    assert d.seeds == (0, 1, 2) and d.p == pytest.approx(ref.pvalue, rel=1e-10)


def test_welch_difference_matches_scipy():
    a, b = [0.30, 0.33, 0.29, 0.35], [0.27, 0.26, 0.31]
    d = stats.welch_difference(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    low, high = ref.confidence_interval(0.95)
    assert d.method == "welch" and d.dof == pytest.approx(ref.df, rel=1e-12)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (d.low, d.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))


def test_unmatched_seeds_fall_back_to_welch():
    d = stats.difference({0: 0.30, 1: 0.33, 2: 0.29}, {3: 0.27, 4: 0.26})
    assert d.method == "welch" and d.seeds == ()
    assert stats.difference({0: 0.3}, {0: 0.2}) is None  # one seed: no interval of either kind


def test_zero_spread_is_exact():
    d = stats.paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert (d.mean, d.half_width, d.p) == (pytest.approx(0.1), 0.0, 0.0) and d.excludes_zero


def _holm_textbook(p_values, alpha):
    """Holm (1979) as a procedure: reject the smallest p while p_(k) <= alpha / (m - k), then stop."""
    m, rejected = len(p_values), [False] * len(p_values)
    for k, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        if p_values[i] > alpha / (m - k):
            break
        rejected[i] = True
    return rejected


def test_holm_on_scipy_p_values():
    recipes = {"a": A, "b": B, "c": C, "d": {0: 0.3932, 1: 0.3866, 2: 0.3881}}
    names = sorted(recipes)
    pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]
    p_values = [scipy_stats.ttest_rel([recipes[x][s] for s in range(3)],
                                      [recipes[y][s] for s in range(3)]).pvalue for x, y in pairs]
    ours = [stats.paired_difference(recipes[x], recipes[y]).p for x, y in pairs]
    assert ours == pytest.approx(p_values, rel=1e-10)
    adjusted, rejected = stats.holm(ours)
    assert rejected == _holm_textbook(p_values, 0.05)
    assert any(rejected) and not all(rejected)


def test_holm_adjusted_values_by_hand():
    adjusted, rejected = stats.holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; running max: 0.04 -> 0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]


def test_kendall_tau_b_matches_scipy_with_ties():
    x = {"a": 0.28, "b": 0.32, "c": 0.30, "d": 0.33, "e": 0.37, "f": 0.39, "g": 0.44}
    y = {"a": 0.258, "b": 0.285, "c": 0.307, "d": 0.312, "e": 0.292, "f": 0.328, "g": 0.328}
    agreement = stats.kendall_tau_b(x, y)
    keys = sorted(x)
    ref = scipy_stats.kendalltau([x[k] for k in keys], [y[k] for k in keys])
    assert agreement.tau == pytest.approx(ref.statistic, rel=1e-12)
    assert (len(agreement.concordant), len(agreement.discordant), agreement.tied) == (17, 3, (("f", "g"),))
    assert set(agreement.discordant) == {("b", "c"), ("c", "e"), ("d", "e")}


@pytest.mark.parametrize(("n", "delta"), [(2, 0.05), (3, 0.01), (3, 0.04), (5, 0.02), (12, 0.01)])
def test_power_matches_the_noncentral_t(n, delta):
    sigma_d = 0.02
    crit = scipy_stats.t.ppf(0.975, n - 1)
    lam = delta * math.sqrt(n) / sigma_d
    expected = scipy_stats.nct.sf(crit, n - 1, lam) + scipy_stats.nct.cdf(-crit, n - 1, lam)
    assert power.paired_power(delta, sigma_d, n) == pytest.approx(expected, abs=1e-8)


def _simulated_flag_rate(delta: float, sigma_d: float, n: int, trials: int = 40_000) -> float:
    """Share of simulated paired comparisons (n seeds, true difference delta) whose interval excludes 0."""
    rng = np.random.default_rng(2024)
    d = delta + sigma_d * rng.standard_normal((trials, n))
    half = scipy_stats.t.ppf(0.975, n - 1) * d.std(axis=1, ddof=1) / math.sqrt(n)
    return float(np.mean(np.abs(d.mean(axis=1)) > half))


@pytest.mark.parametrize("n", [3, 5])
def test_resolving_power_against_a_simulation(n):
    sigma_d = 0.011
    detectable = power.detectable_difference(sigma_d, n)
    assert _simulated_flag_rate(detectable, sigma_d, n) == pytest.approx(power.POWER, abs=0.01)
    needed = power.seeds_needed(detectable, sigma_d)
    assert needed == n  # the seeds that reach 80% power at that difference are exactly the ones it came from
    # the flagged threshold: an observed mean difference that large sits exactly on the interval's edge
    assert power.flagged_difference(sigma_d, n) == pytest.approx(
        scipy_stats.t.ppf(0.975, n - 1) * sigma_d / math.sqrt(n))


def test_seeds_needed_is_the_first_seed_count_with_enough_power():
    n = power.seeds_needed(0.01, 0.02)
    assert power.paired_power(0.01, 0.02, n) >= 0.8 > power.paired_power(0.01, 0.02, n - 1)
    assert power.seeds_needed(1e-5, 0.02) is None  # beyond MAX_SEEDS


def test_seed_noise_recovers_the_recipe_noise():
    rng = np.random.default_rng(7)
    sigma, recipes, seeds = 0.01, 40, 6
    shared = 0.03 * rng.standard_normal(seeds)  # a seed effect common to every recipe
    table = {f"r{i:02d}": {s: 0.3 + 0.005 * i + shared[s] + sigma * rng.standard_normal()
                           for s in range(seeds)} for i in range(recipes)}
    table["unpaired"] = {10: 0.3, 11: 0.31}  # other seeds: left out of the table
    noise = power.seed_noise(table)
    assert noise.seeds == tuple(range(seeds)) and "unpaired" not in noise.recipes
    assert noise.dof == (recipes - 1) * (seeds - 1)
    assert noise.sigma == pytest.approx(sigma, rel=0.1)
    values = np.array([[table[r][s] for s in range(seeds)] for r in noise.recipes])
    residual = values - values.mean(1, keepdims=True) - values.mean(0, keepdims=True) + values.mean()
    assert noise.sigma == pytest.approx(math.sqrt((residual ** 2).sum() / noise.dof), rel=1e-12)
    within = math.sqrt(values.var(axis=1, ddof=1).mean())
    assert noise.sigma_alone == pytest.approx(within, rel=1e-12)
    assert noise.sigma_alone > 1.5 * noise.sigma  # the shared seed effect inflates the unpaired spread
