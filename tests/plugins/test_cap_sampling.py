"""soft_cap / hard_cap: exact laws by enumeration, bit-exactness of the race, invariants and errors.

How the law is tested.  The exact sampler's counts are a deterministic function of one 64-bit key: every event
time is built from ``cap_race.increments(key, ...)``.  So (1) a brute-force race over the same increments
(all firing times up to n per item, keep the n smallest) must give bit-identical counts, for any key and any
tuning; and (2) the brute force, vectorised over thousands of independent replicas, must have the law of the
sequential process, which we enumerate exactly by dynamic programming over count vectors.  (2) uses a
total-variation bound derived below; (1) ties the production code path to it.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
from filterbench.harness.contract import ScoreTable
from filterbench.harness.errors import ParamsError
from filterbench.plugins import cap_race as cr
from filterbench.plugins.cap_sampling import (
    HardCapSampler,
    SoftCapSampler,
    hard_cap_batched,
    register_samplers,
    soft_cap_batched,
)
from filterbench.testing import check_sampler

# --------------------------------------------------------------------------- exact laws by enumeration


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.where(np.isfinite(z), z, -np.inf)
    w = np.exp(z - z.max())
    return w / w.sum()


def sequential_law(s, n, alpha=0.0, cap=None) -> dict:
    """Law of the count vector after n one-at-a-time draws from softmax(s - alpha*c), masked at the cap."""
    s = np.asarray(s, float)
    dist = {(0,) * len(s): 1.0}
    for _ in range(n):
        new = defaultdict(float)
        for c, pc in dist.items():
            z = s - (alpha * np.array(c) if alpha else 0.0)
            if cap is not None:
                z = np.where(np.array(c) >= cap, -np.inf, z)
            for i, pi in enumerate(_softmax(z)):
                if pi > 0:
                    new[c[:i] + (c[i] + 1,) + c[i + 1:]] += pc * pi
        dist = dict(new)
    return dist


def plackett_luce_rounds_law(s, n, alpha, g) -> dict:
    """Law of FLYT's batched SCS: rounds of g ordered draws without replacement, then alpha off each logit."""
    s = np.asarray(s, float)
    dist = {(0,) * len(s): 1.0}
    left = n
    while left:
        size, new = min(g, left), defaultdict(float)
        for c, pc in dist.items():
            w = np.where(np.isfinite(s), np.exp(s - alpha * np.array(c)), 0.0)
            for order in itertools.permutations(np.flatnonzero(w > 0), size):
                p, rest = pc, w.sum()
                for i in order:
                    p, rest = p * w[i] / rest, rest - w[i]
                new[tuple(ci + (i in order) for i, ci in enumerate(c))] += p
        dist, left = dict(new), left - size
    return dist


def multinomial_law(s, n) -> dict:
    p = _softmax(np.asarray(s, float))
    law = {}
    for c in itertools.product(range(n + 1), repeat=len(p)):
        if sum(c) == n:
            coef = math.factorial(n) / math.prod(math.factorial(k) for k in c)
            law[c] = coef * math.prod(pi**k for pi, k in zip(p, c))
    return {c: q for c, q in law.items() if q > 0}


def _tv_laws(a: dict, b: dict) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


# --------------------------------------------------------------------------- Monte-Carlo comparison


def tv_bound(law: dict, runs: int, fail_prob: float = 1e-6) -> float:
    """Bound on TV(empirical, law) that holds with probability >= 1 - fail_prob for ``runs`` i.i.d. draws.

    E[TV] <= 1/2 sum_k E|p_hat_k - p_k| <= 1/2 sum_k sqrt(p_k (1 - p_k) / runs) (Jensen), and TV changes by
    at most 1/runs when one draw changes, so McDiarmid gives P(TV >= E[TV] + t) <= exp(-2 t^2 runs).
    """
    p = np.array(list(law.values()))
    return 0.5 * np.sqrt(p * (1 - p) / runs).sum() + math.sqrt(math.log(1 / fail_prob) / (2 * runs))


def empirical_tv(samples: np.ndarray, law: dict) -> float:
    """TV between the empirical law of the rows of ``samples`` (count vectors) and ``law``."""
    rows, freq = np.unique(samples, axis=0, return_counts=True)
    emp = {tuple(int(v) for v in r): f / len(samples) for r, f in zip(rows, freq)}
    outside = set(emp) - set(law)
    assert not outside, f"count vectors outside the support: {sorted(outside)[:5]}"
    return _tv_laws(emp, law)


def race_replicas(s, n, law: cr.Law, key, runs: int) -> np.ndarray:
    """Brute-force race over the production increments: all n firings of every item, keep the n earliest.

    Replica r uses items r*M .. r*M+M-1 of the same key, i.e. independent variates.
    """
    s = np.asarray(s, float)
    sp = s - s[np.isfinite(s)].max()
    sp[np.isnan(sp)] = -np.inf
    m = len(s)
    items = np.arange(runs * m)[:, None]
    with np.errstate(over="ignore"):
        times = np.cumsum(cr.increments(key, law, items, np.arange(n)[None, :], np.tile(sp, runs)[:, None]),
                          axis=1)
    flat = times.reshape(runs, m * n)
    tau = np.partition(flat, n - 1, axis=1)[:, n - 1:n]
    return (times.reshape(runs, m, n) <= tau[:, :, None]).sum(axis=2)


def _key(seed: int) -> np.uint64:
    return cr.derive_key(np.random.default_rng(seed))


# --------------------------------------------------------------------------- the references agree


def test_reference_laws_agree_on_their_special_cases():
    s = [0.3, -1.0, 1.2]
    assert _tv_laws(sequential_law(s, 4), multinomial_law(s, 4)) < 1e-12  # alpha = 0 is multinomial
    ss = plackett_luce_rounds_law(s, 2, 0.0, 2)  # one round of 2 = successive sampling
    assert _tv_laws(sequential_law(s, 2, alpha=60.0), ss) < 1e-12  # alpha -> inf
    assert _tv_laws(sequential_law(s, 2, cap=1), ss) < 1e-12  # cap 1
    # batches of G = 1 are the exact process
    assert _tv_laws(plackett_luce_rounds_law(s, 4, 0.7, 1), sequential_law(s, 4, 0.7)) < 1e-12
    # the Monte-Carlo bound below can tell apart laws that differ this much
    bound = tv_bound(sequential_law(s, 4), 20000)
    assert _tv_laws(sequential_law(s, 4, 0.7), sequential_law(s, 4, 0.0)) > 2 * bound


# --------------------------------------------------------------------------- exact sampler: law

CASES = [  # scores, n, law
    ([0.0, 0.5, 1.0], 4, cr.soft_cap_law(0.0)),
    ([0.0, 0.5, 1.0, -0.5], 5, cr.soft_cap_law(0.3)),
    ([0.0, 2.0, 4.0, -1.0], 5, cr.soft_cap_law(1.5)),
    ([0.0, 2.0, 4.0, 1.0], 2, cr.soft_cap_law(math.inf)),
    ([0.0, 0.5, 1.0, np.nan], 4, cr.soft_cap_law(0.7)),
    ([0.0, 3.0, 1.0], 5, cr.hard_cap_law(2)),
    ([0.0, 2.0, -np.inf, 1.0], 2, cr.hard_cap_law(1)),
    ([0.0, 1.5, 0.5, -1.0], 5, cr.hard_cap_law(2)),
    ([1.0, 1.0, 0.0, 2.5], 6, cr.hard_cap_law(3)),
]


@pytest.mark.parametrize("s,n,law", CASES)
def test_race_has_the_sequential_law(s, n, law):
    exact = sequential_law(s, n, law.alpha, law.cap)
    runs = 20000
    samples = race_replicas(s, n, law, _key(len(s) * 100 + n), runs)
    assert (samples.sum(axis=1) == n).all()
    assert empirical_tv(samples, exact) <= tv_bound(exact, runs)


def test_alpha_zero_is_multinomial_and_alpha_inf_is_successive_sampling():
    s = [0.2, -0.4, 1.1, 0.0]
    runs = 20000
    multi = multinomial_law(s, 4)
    draws = race_replicas(s, 4, cr.soft_cap_law(0.0), _key(1), runs)
    assert empirical_tv(draws, multi) <= tv_bound(multi, runs)
    succ = plackett_luce_rounds_law(s, 3, 0.0, 3)
    draws = race_replicas(s, 3, cr.soft_cap_law(math.inf), _key(2), runs)
    assert draws.max() == 1
    assert empirical_tv(draws, succ) <= tv_bound(succ, runs)


# --------------------------------------------------------------------------- exact sampler: bit-exact path

BIG_TUNING = cr.Tuning()
TINY_TUNING = cr.Tuning(chunk=7, block=5, sub_items=13, heavy_items=2)
TIGHT_TUNING = cr.Tuning(chunk=64, block=16, sub_items=40, heavy_items=4, delta_min=0.0, z=0.0, threads=2)


def _brute(s, n, law, seed):
    return race_replicas(s, n, law, _key(seed), 1)[0]


@pytest.mark.parametrize("law", [cr.soft_cap_law(0.0), cr.soft_cap_law(0.4), cr.soft_cap_law(math.inf),
                                 cr.hard_cap_law(1), cr.hard_cap_law(3)])
def test_production_race_equals_brute_force_bit_for_bit(law):
    paths = defaultdict(int)
    for seed in range(12):
        rng = np.random.default_rng(seed + 50)
        m, n = [(4, 5), (60, 150), (300, 120), (200, 450)][seed % 4]
        n = min(n, m) if law.cap == 1 else n
        s = rng.normal(0, 2, m)
        s[rng.random(m) < 0.05] = np.nan
        n = min(n, (law.cap or n) * int(np.isfinite(s).sum()))
        expected = _brute(s, n, law, seed)
        for tuning in (BIG_TUNING, TINY_TUNING, TIGHT_TUNING):
            stats = {}
            got = cr.race_counts(s, n, law, np.random.default_rng(seed), tuning, stats)
            assert got.dtype == np.uint32 and got.tobytes() == expected.astype(np.uint32).tobytes()
            paths[stats["path"]] += 1
            paths["restart"] += stats.get("restarts", 0)
            paths["extension"] += stats.get("extensions", 0) > 0
    assert paths["exact_small"] and paths["pool"]
    if law.cap != 1:  # the tight tuning misjudges the window on purpose: both repair paths must have run
        assert paths["restart"] and paths["extension"]


def test_counts_do_not_depend_on_tuning_at_moderate_size():
    s = np.random.default_rng(3).normal(0, 2.5, 20000).astype(np.float32)
    law, stats = cr.soft_cap_law(0.15), {}
    stratified = cr.Tuning(chunk=1000, sub_items=2000, heavy_items=200, threads=2)
    runs = [cr.race_counts(s, 30000, law, np.random.default_rng(9), t, stats) for t in
            (cr.Tuning(), TIGHT_TUNING, stratified)]
    assert runs[0].tobytes() == runs[1].tobytes() == runs[2].tobytes()
    assert stats["path"] == "pool" and stats["heavy"] > 0  # the heavy stratum of the calibration was used


def test_multinomial_moments_at_larger_n():
    s = np.random.default_rng(4).normal(0, 1, 50)
    n = 20000
    counts = cr.race_counts(s, n, cr.soft_cap_law(0.0), np.random.default_rng(5)).astype(float)
    p = _softmax(s)
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < 5


# --------------------------------------------------------------------------- batched (FLYT notebook) forms


def _batched_samples(fn, s, n, param, batch, runs, seed):
    rng = np.random.default_rng(seed)
    return np.array([fn(np.asarray(s, float), n, param, batch, rng) for _ in range(runs)])


@pytest.mark.parametrize("batch", [1, 2])
def test_batched_soft_cap_has_the_plackett_luce_rounds_law(batch):
    s, n, alpha, runs = [0.0, 1.0, -0.5, 0.5], 4, 0.8, 3000
    law = plackett_luce_rounds_law(s, n, alpha, batch)
    samples = _batched_samples(soft_cap_batched, s, n, alpha, batch, runs, seed=batch)
    assert empirical_tv(samples, law) <= tv_bound(law, runs)


def test_batched_hard_cap_has_the_exact_law():
    s, n, cap, runs = [0.0, 1.5, -0.5], 4, 2, 3000
    law = sequential_law(s, n, cap=cap)
    samples = _batched_samples(hard_cap_batched, s, n, cap, 3, runs, seed=7)
    assert empirical_tv(samples, law) <= tv_bound(law, runs)


def test_batched_sums_and_caps():
    s = np.random.default_rng(0).normal(0, 3, 2000)
    soft = SoftCapSampler(alpha=0.1, batch=300)(s, 2500, 1)
    assert soft.sum() == 2500 and soft.max() <= math.ceil(2500 / 300)
    hard = HardCapSampler(cap=2, batch=1000)(s, 3000, 1)
    assert hard.sum() == 3000 and hard.max() == 2


# --------------------------------------------------------------------------- plugin invariants and errors

SAMPLERS = [SoftCapSampler(alpha=0.3), SoftCapSampler(alpha=0.3, batch=64), HardCapSampler(cap=3),
            HardCapSampler(cap=3, batch=256)]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_conformance_sum_and_determinism(sampler):
    counts = check_sampler(sampler, pool_size=500, samples_seen=800)
    assert counts.sum() == 800
    same = sampler(np.linspace(-2, 2, 500), 800, 11)
    assert same.tobytes() == sampler(np.linspace(-2, 2, 500), 800, 11).tobytes()
    assert same.tobytes() != sampler(np.linspace(-2, 2, 500), 800, 12).tobytes()


def test_hard_cap_never_exceeded_and_full_budget():
    s = np.random.default_rng(1).normal(0, 4, 3000)
    for cap in (1, 2, 5):
        counts = HardCapSampler(cap=cap)(s, 2900, 0)
        assert counts.max() <= cap and counts.sum() == 2900
    s[:10] = np.nan
    full = HardCapSampler(cap=2)(s, 2 * 2990, 0)  # every drawable item at its cap
    assert (full[:10] == 0).all() and (full[10:] == 2).all()


@pytest.mark.parametrize("sampler", [HardCapSampler(cap=2), HardCapSampler(cap=2, batch=10)], ids=repr)
def test_hard_cap_refuses_budget_above_capacity(sampler):
    s = np.r_[np.zeros(8), np.nan, -np.inf]
    with pytest.raises(ParamsError, match=r"hard_cap.*17 exceeds cap 2 x 8 drawable"):
        sampler(s, 17, 0)


def test_score_range_beyond_float64_fails_clearly():
    with pytest.raises(ParamsError, match="hard_cap.*overflow float64"):
        HardCapSampler(cap=1)(np.r_[0.0, np.full(10, -800.0)], 5, 0)
    with pytest.raises(ParamsError, match="soft_cap.*overflow float64"):
        SoftCapSampler(alpha=0.15)(np.r_[0.0, -800.0], 6000, 0)


def test_soft_cap_without_replacement_limits():
    s = np.random.default_rng(2).normal(0, 1, 100)
    counts = SoftCapSampler(alpha=math.inf)(s, 100, 0)
    assert (counts == 1).all()
    with pytest.raises(ParamsError, match="soft_cap.*exceeds cap 1"):
        SoftCapSampler(alpha=math.inf)(s, 101, 0)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_non_finite_scores_are_never_drawn(sampler):
    s = np.random.default_rng(3).normal(0, 1, 400)
    s[::3] = np.nan
    s[1::7] = -np.inf
    counts = sampler(s, 500, 0)
    assert counts[~np.isfinite(s)].sum() == 0 and counts.sum() == 500
    with pytest.raises(ParamsError, match="inf"):
        sampler(np.r_[s, np.inf], 10, 0)
    with pytest.raises(ParamsError, match="no drawable item"):
        sampler(np.full(5, np.nan), 3, 0)


@pytest.mark.parametrize("sampler", [SoftCapSampler(alpha=0.5), HardCapSampler(cap=4)], ids=repr)
def test_shift_invariance_and_scale_sensitivity(sampler):
    s = np.random.default_rng(4).normal(0, 2, 3000)
    base = sampler(s, 5000, 21)
    for shift in (7.25, -300.0):
        assert sampler(s + shift, 5000, 21).tobytes() == base.tobytes()
    assert sampler(2 * s, 5000, 21).tobytes() != base.tobytes()


def test_column_choice_registration_and_params():
    table = ScoreTable({"a.score": np.zeros(50), "b.score": np.r_[np.zeros(49), 50.0]})
    counts = SoftCapSampler(column="b.score", alpha=0.0)(table, 30, 0)
    assert counts[-1] == 30
    with pytest.raises(ParamsError, match="several score columns"):
        SoftCapSampler()(table, 30, 0)
    with pytest.raises(ParamsError, match="invalid params"):
        HardCapSampler(cap=0)
    with pytest.raises(ParamsError, match="invalid params"):
        SoftCapSampler(alpha=0.1, cap=3)
    registered = []
    register_samplers(register=registered.append)
    assert [c.name for c in registered] == ["soft_cap", "hard_cap"]
    assert all(c.mode == "multiset" for c in registered)
    assert SoftCapSampler(column="x").score_columns() == ("x",)


def test_temperature_divides_the_log_weights():
    from filterbench import get_sampler

    scores = np.random.default_rng(4).normal(0, 0.1, 500).astype(np.float32)
    for name, params in (("soft_cap", {"alpha": 0.15}), ("hard_cap", {"cap": 3})):
        hot = get_sampler(name, temperature=0.01, **params)(scores, 800, 9)
        scaled = get_sampler(name, **params)(scores.astype(np.float64) * 100, 800, 9)
        plain = get_sampler(name, **params)(scores, 800, 9)
        assert np.array_equal(hot, scaled) and not np.array_equal(hot, plain)
        assert hot.sum() == 800
