import numpy as np
import pytest

from filterbench import get_sampler
from filterbench.harness.contract import ScoreTable
from filterbench.harness.uids import UID_DTYPE
from filterbench.testing import check_sampler
from filterbench.harness.cut import order_keys as _order_keys
from filterbench.plugins.basic_samplers import kth_largest_key, top_k_counts


def _uids(n, seed=0):
    return np.frombuffer(np.random.default_rng(seed).bytes(16 * n), dtype=UID_DTYPE).copy()


@pytest.mark.parametrize("name,params", [("all", {}), ("threshold", {"threshold": 0.0}),
                                         ("top_fraction", {"fraction": 0.3}), ("random_fraction", {"fraction": 0.2})])
def test_conformance(name, params):
    counts = check_sampler(get_sampler(name, **params))
    assert set(np.unique(counts)) <= {0, 1}


def test_top_fraction_is_exactly_floor_with_ties_broken_by_uid():
    n = 1001
    scores = np.round(np.random.default_rng(0).random(n), 1).astype(np.float32)  # heavy ties
    uids = _uids(n)
    counts = get_sampler("top_fraction", fraction=0.3)(ScoreTable({"s": scores}, uids), n, 0)
    k = int(np.floor(0.3 * n))
    assert counts.sum() == k
    order = sorted(range(n), key=lambda i: (-float(scores[i]), int(uids[i]["f0"]), int(uids[i]["f1"])))
    assert set(np.flatnonzero(counts)) == set(order[:k])


def test_radix_select_matches_sort_and_is_chunk_invariant():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.standard_normal(5000), [-0.0, 0.0, np.inf, -np.inf]]).astype(np.float32)
    for k in (1, 17, 2500, len(values)):
        key, above = kth_largest_key([values], k)
        keys = np.sort(_order_keys(values))[::-1]  # -0.0 sorts below 0.0 as a distinct key
        assert key == keys[k - 1] and above == int((keys > key).sum())
        assert np.sort(values)[::-1][k - 1] == values[_order_keys(values) == key][0]
        chunks = [values[i:i + 333] for i in range(0, len(values), 333)]
        assert kth_largest_key(chunks, k) == (key, above)
    assert np.array_equal(top_k_counts(values, None, 50, chunk_rows=7), top_k_counts(values, None, 50))


def test_top_k_reads_a_memory_mapped_column_one_chunk_at_a_time(tmp_path):
    """The 12.8B-row case in small: beside the counts, top_fraction holds no full-length array of the scores."""
    import tracemalloc

    n, chunk = 1 << 22, 1 << 15
    rng = np.random.default_rng(3)
    values = rng.standard_normal(n).astype(np.float32)
    values[::1000] = 0.5  # ties at many places, some at the boundary for k below
    np.save(tmp_path / "column.npy", values)
    mapped = np.load(tmp_path / "column.npy", mmap_mode="r")
    uids = _uids(n)
    k = int((values > 0.5).sum()) + 700  # keeps 700 of the ~2,100 tied 0.5s: ties broken by uid
    tracemalloc.start()
    try:
        counts = top_k_counts(mapped, uids, k, chunk_rows=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(counts, top_k_counts(values, uids, k)) and counts.sum() == k
    # counts (4 bytes/row) + the radix histograms (~2.5 MiB, whatever n is) + a few chunks of temporaries; one
    # full-length key array would add 16 MiB here
    assert peak < counts.nbytes + (4 << 20), (peak, counts.nbytes)


def test_nan_scores_are_never_kept():
    scores = np.array([np.nan, 1.0, np.nan, 0.5, 0.2], dtype=np.float32)
    counts = get_sampler("top_fraction", fraction=0.8)(scores, 5, 0)
    assert counts.tolist() == [0, 1, 0, 1, 1]
    assert get_sampler("threshold", threshold=0.3)(scores, 5).tolist() == [0, 1, 0, 1, 0]


def test_random_fraction_is_exact_and_seeded():
    a = get_sampler("random_fraction", fraction=0.37)(np.zeros(1000), 1000, 1)
    b = get_sampler("random_fraction", fraction=0.37)(np.zeros(1000), 1000, 1)
    c = get_sampler("random_fraction", fraction=0.37)(np.zeros(1000), 1000, 2)
    assert a.sum() == 370 and np.array_equal(a, b) and not np.array_equal(a, c)


def test_datacomp_rule_keeps_one_more_than_floor():
    scores = np.random.default_rng(3).random(100).astype(np.float32)
    counts = get_sampler("top_fraction", fraction=0.3, rule="datacomp")(scores, 100)
    assert counts.sum() == 31 and counts[np.argsort(-scores)[:31]].all()
