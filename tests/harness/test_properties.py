"""Property tests (hypothesis): the uid codec, subset files, the samplers' invariants, worker-count invariance.

Examples are derandomised (tests/conftest.py's profile): a failure reproduces on every run and machine.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from filterbench import get_sampler
from filterbench.harness.contract import Budget, ScoreTable
from filterbench.harness.errors import PoolError, SubsetError
from filterbench.harness.uids import UID_DTYPE, check_sorted, expand_counts, hex_to_pairs, pairs_to_hex

UID = st.integers(min_value=0, max_value=2**128 - 1)
#: uids that share their high word often, so the low word decides the order
CLASHING_UID = st.tuples(st.integers(0, 3), st.integers(0, 2**64 - 1)).map(lambda t: (t[0] << 64) | t[1])


def _hex(value: int) -> str:
    return f"{value:032x}"


def _pairs(values: list[int]) -> np.ndarray:
    out = np.empty(len(values), dtype=UID_DTYPE)
    out["f0"] = [v >> 64 for v in values]
    out["f1"] = [v & (2**64 - 1) for v in values]
    return out


# -- the uid codec ---------------------------------------------------------------------------------------------
@given(st.lists(UID, max_size=50), st.booleans())
def test_hex_and_pairs_round_trip_and_split_at_the_16th_character(values, upper):
    strings = [_hex(v).upper() if upper else _hex(v) for v in values]
    pairs = hex_to_pairs(strings)
    assert pairs.dtype == UID_DTYPE and len(pairs) == len(values)
    assert [int(h) for h in pairs["f0"]] == [int(s[:16], 16) for s in strings]
    assert [int(lo) for lo in pairs["f1"]] == [int(s[16:], 16) for s in strings]
    assert pairs_to_hex(pairs).tolist() == [s.lower() for s in strings]


@given(st.lists(st.one_of(UID, CLASHING_UID), max_size=60))
def test_numpy_order_of_pairs_is_the_order_of_the_128_bit_values(values):
    assert pairs_to_hex(np.sort(_pairs(values))).tolist() == [_hex(v) for v in sorted(values)]


@given(st.text(max_size=40))
def test_a_malformed_uid_is_refused_naming_its_row(text):
    assume(len(text) != 32 or any(c not in "0123456789abcdefABCDEF" for c in text))
    with pytest.raises(PoolError, match=r"f.parquet: row 1: uid "):
        hex_to_pairs([_hex(1), text], where="f.parquet")


# -- subset files ----------------------------------------------------------------------------------------------
@given(st.lists(st.one_of(UID, CLASHING_UID), min_size=2, max_size=40))
def test_check_sorted_accepts_exactly_the_sorted_arrays(values):
    pairs = _pairs(values)
    if values == sorted(values):
        check_sorted(pairs, "s.npy")
    else:
        with pytest.raises(SubsetError, match="s.npy: subset is not sorted at position"):
            check_sorted(pairs, "s.npy")


def test_unsorted_low_words_are_rejected():
    """Mutant 'the sortedness check ignores the low 64 bits': equal high words, descending low words."""
    with pytest.raises(SubsetError, match="not sorted at position 1"):
        check_sorted(_pairs([(5 << 64) | 9, (5 << 64) | 2]), "s.npy")


@given(st.lists(st.tuples(st.one_of(UID, CLASHING_UID), st.integers(0, 4)), max_size=40,
                unique_by=lambda t: t[0]))
def test_expand_counts_repeats_each_uid_count_times_in_sorted_order(rows):
    values = [v for v, _ in rows]
    counts = np.array([c for _, c in rows], dtype=np.uint32)
    subset = expand_counts(_pairs(values), counts)
    check_sorted(subset, "expanded")
    assert len(subset) == int(counts.sum())
    expected = sorted(v for v, c in rows for _ in range(c))
    assert pairs_to_hex(subset).tolist() == [_hex(v) for v in expected]


# -- samplers ----------------------------------------------------------------------------------------------------
SCORES = st.lists(st.floats(-5, 5, allow_nan=False, width=32) | st.sampled_from([0.0, 1.0]), min_size=4,
                  max_size=300).map(lambda xs: np.asarray(xs, dtype=np.float32))


def _table(scores: np.ndarray, seed: int = 0) -> ScoreTable:
    rng = np.random.default_rng(seed)
    uids = _pairs([int(x) for x in rng.integers(0, 2**62, len(scores))])
    return ScoreTable({"s.score": scores}, np.sort(uids))


@given(SCORES, st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_top_fraction_keeps_exactly_floor_fn_of_the_highest_and_is_deterministic(scores, fraction, seed):
    k = int(np.floor(fraction * len(scores)))
    assume(k >= 1)
    sampler = get_sampler("top_fraction", fraction=fraction)
    table = _table(scores)
    counts = sampler(table, Budget(len(scores), 1, len(scores)), seed)
    assert set(np.unique(counts)) <= {0, 1} and int(counts.sum()) == k
    assert scores[counts == 1].min() >= scores[counts == 0].max(initial=-np.inf)  # the top ones, ties by uid
    assert np.array_equal(counts, sampler(table, Budget(len(scores), 1, len(scores)), seed + 1))  # no randomness


@given(SCORES, st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_random_fraction_keeps_floor_fn_and_a_seed_gives_one_answer(scores, fraction, seed):
    n = len(scores)
    assume(int(np.floor(fraction * n)) >= 1)
    sampler = get_sampler("random_fraction", fraction=fraction)
    first = sampler(_table(scores), Budget(n, 1, n), seed)
    assert int(first.sum()) == int(np.floor(fraction * n)) and first.max() == 1
    assert np.array_equal(first, sampler(_table(scores), Budget(n, 1, n), seed))


@settings(max_examples=25)
@given(SCORES, st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**31), st.sampled_from([None, 7]))
def test_cap_samplers_sum_to_the_budget_respect_the_cap_and_repeat_for_a_seed(scores, cap, ratio, seed, batch):
    n = len(scores)
    budget = Budget(samples_seen=min(n * cap, n * ratio), segments=1, pool_size=n)
    hard = get_sampler("hard_cap", cap=cap, batch=batch)
    counts = hard(_table(scores), budget, seed)
    assert int(counts.sum()) == budget.samples_seen and int(counts.max()) <= cap
    assert np.array_equal(counts, hard(_table(scores), budget, seed))
    # a round draws without replacement, so a batch larger than the pool is refused (tested elsewhere)
    soft = get_sampler("soft_cap", alpha=0.5, batch=None if batch is None else min(batch, n))
    counts = soft(_table(scores), budget, seed)
    assert int(counts.sum()) == budget.samples_seen and counts.dtype == np.uint32
    assert np.array_equal(counts, soft(_table(scores), budget, seed))


@given(SCORES, st.floats(-5, 5, allow_nan=False))
def test_threshold_keeps_exactly_the_scores_at_or_above_it(scores, threshold):
    keep = scores >= np.float32(threshold)
    assume(keep.any())
    counts = get_sampler("threshold", threshold=threshold)(_table(scores), len(scores))
    assert np.array_equal(counts.astype(bool), keep)


# -- worker-count invariance ---------------------------------------------------------------------------------------
@settings(max_examples=8)
@given(st.lists(st.integers(0, 10**6), min_size=0, max_size=12), st.integers(1, 4))
def test_run_units_returns_the_same_results_in_unit_order_for_any_worker_count(units, workers):
    from filterbench.harness.executor import run_units

    def work(unit: int) -> int:
        return (unit * 2654435761) % 2**32

    assert run_units(work, units, workers=workers, progress=False) == [work(u) for u in units]


@settings(max_examples=4)
@given(st.integers(40, 200), st.integers(1, 4), st.integers(0, 1000))
def test_scores_do_not_depend_on_the_worker_count(tmp_path_factory, rows, shards, seed):
    from filterbench import get_scorer
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.store import Store
    from filterbench.testing import fabricate_pool

    assume(rows >= shards)
    root = tmp_path_factory.mktemp("prop")
    pool = Pool(fabricate_pool(root / "pool", rows=rows, shards=shards, seed=seed, images=False))
    one = run_score(Store(root / "one"), pool, get_scorer("negcliploss"), workers=1, progress=False)
    two = run_score(Store(root / "two"), pool, get_scorer("negcliploss"), workers=2, progress=False)
    assert one.key == two.key
    assert {k: v["digest"] for k, v in one.manifest["outputs"].items()} == \
        {k: v["digest"] for k, v in two.manifest["outputs"].items()}
