"""Map + reduce cuts and statistics over score parts equal the in-memory samplers and numpy, bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filterbench.harness import cut
from filterbench.harness.contract import Budget, ScoreTable
from filterbench.harness.executor import InlineExecutor, LocalExecutor
from filterbench.harness.uids import UID_DTYPE
from filterbench.plugins.basic_samplers import ThresholdSampler, TopFractionSampler


def _column(tmp_path, values: np.ndarray, sizes: list[int], executor=None) -> cut.Column:
    parts, offset = [], 0
    (tmp_path / "parts").mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        chunk = values[offset:offset + size]
        pq.write_table(pa.table({"score": pa.array(chunk, pa.float32())}), tmp_path / f"parts/{i:04d}.parquet")
        parts.append(cut.Part(f"{i:04d}", offset, size))
        offset += size
    assert offset == len(values)
    return cut.Column(tmp_path, parts, "score", executor or InlineExecutor())


def _awkward_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scores with NaN, ties at many values, -0.0 beside +0.0, negatives and infinities."""
    values = rng.choice(np.float32([-1.5, -0.0, 0.0, 0.25, 0.25, 0.5, 1.0, np.nan]), size=n)
    noisy = rng.random(n) < 0.5
    values[noisy] = rng.normal(size=int(noisy.sum())).astype(np.float32)
    values[rng.integers(0, n, 3)] = np.float32(np.inf)
    return values.astype(np.float32)


def _uids(rng: np.random.Generator, n: int) -> np.ndarray:
    pairs = np.zeros(n, dtype=UID_DTYPE)
    pairs["f0"] = rng.integers(0, 4, n, dtype=np.uint64)  # many equal high words: order decided by the low word
    pairs["f1"] = rng.permutation(n).astype(np.uint64)
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_fraction_cut_equals_the_in_memory_sampler(tmp_path, seed):
    rng = np.random.default_rng(seed)
    values, uids = _awkward_values(rng, 5000), _uids(rng, 5000)
    column = _column(tmp_path, values, [1, 999, 0, 2500, 1500])
    for fraction in (0.001, 0.1, 0.3, 0.7, 0.99, 1.0):
        for rule in ("exact", "datacomp"):
            sampler = TopFractionSampler(fraction=fraction, rule=rule)
            expected = sampler.sample(ScoreTable({"s.score": values}, uids), Budget(5000, 1, 5000), rng)
            counts = np.zeros(5000, np.uint32)
            c = sampler.cut(Budget(5000, 1, 5000))
            if c.rule == "top":
                cut.top_k(column, int(c.value), uids, counts)
            else:
                cut.datacomp_fraction(column, c.value, counts)
            assert np.array_equal(counts, expected), (fraction, rule)


def test_threshold_cut_equals_the_in_memory_sampler(tmp_path):
    rng = np.random.default_rng(3)
    values = _awkward_values(rng, 3000)
    column = _column(tmp_path, values, [1000, 1000, 1000])
    for threshold in (-np.inf, -0.0, 0.0, 0.2, 0.25, 1.0, 5.0):
        expected = ThresholdSampler(threshold=threshold).sample(ScoreTable({"s": values}), Budget(1, 1, 3000), rng)
        counts = np.zeros(3000, np.uint32)
        column.threshold(threshold, counts)
        assert np.array_equal(counts, expected), threshold


def test_order_statistics_are_exact(tmp_path):
    rng = np.random.default_rng(4)
    values = _awkward_values(rng, 4000)
    values = values[np.isfinite(values) | np.isnan(values)]
    column = _column(tmp_path, values, [len(values) // 2, len(values) - len(values) // 2])
    ordered = np.sort(values[~np.isnan(values)])
    ranks = [0, 1, 17, len(ordered) // 2, len(ordered) - 1]
    got = [cut.key_value(k) for k in column.keys_at(ranks)]
    assert got == [float(ordered[r]) for r in ranks]
    assert [cut.key_value(int(k)) for k in cut.order_keys(ordered[:50])] == [float(v) for v in ordered[:50]]


def test_column_statistics_match_numpy(tmp_path):
    rng = np.random.default_rng(5)
    values = rng.normal(size=10_001).astype(np.float32)
    values[::97] = np.nan
    stats = _column(tmp_path, values, [3000, 7001]).stats()
    finite = values[np.isfinite(values)]
    assert stats["count"] == 10_001 and stats["nan"] == int(np.isnan(values).sum())
    assert (stats["min"], stats["max"]) == (float(finite.min()), float(finite.max()))
    assert stats["mean"] == pytest.approx(float(finite.astype(np.float64).mean()), rel=1e-12)
    assert stats["std"] == pytest.approx(float(finite.astype(np.float64).std()), rel=1e-9)
    for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
        assert stats[name] == pytest.approx(float(np.quantile(finite.astype(np.float64), q)), rel=1e-6), name


def test_passes_on_local_workers_equal_inline(tmp_path):
    rng = np.random.default_rng(6)
    values, uids = _awkward_values(rng, 6000), _uids(rng, 6000)
    sizes = [1000] * 6
    inline = np.zeros(6000, np.uint32)
    cut.top_k(_column(tmp_path / "a", values, sizes), 1234, uids, inline)
    pooled = np.zeros(6000, np.uint32)
    cut.top_k(_column(tmp_path / "b", values, sizes, LocalExecutor(2)), 1234, uids, pooled)
    assert np.array_equal(inline, pooled) and inline.sum() == 1234
