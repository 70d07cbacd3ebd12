"""Benchmarks of the exact soft-cap race against FLYT's batched algorithm (see docs/performance.md).

Skipped by the default test run (``--benchmark-skip``).  Run with::

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/test_bench_cap_sampling.py \
        -o addopts="--import-mode=importlib" --benchmark-only --benchmark-json=/tmp/bench_cap.json

Sizes can be shrunk for a smoke run with ``FB_BENCH_CAP_M`` (default 10M) and ``FB_BENCH_CAP_BIG``
(default 128M).
Scores are N(0, 2.5^2), FLYT's notebook demo distribution; alpha = 0.15 (the released M-FLYT+SCS model).

Targets asserted (docs/performance.md; bounds with headroom for a shared 2-core machine): the exact samplers
take under ``EXACT_S_PER_MILLION`` seconds per million uids and give the same counts for any thread count;
they are at least ``MIN_SPEEDUP`` times faster than the batched algorithms (measured 311-406x); the
extrapolation of the batched cost from its first rounds does not overstate it; at M = N = 128M the exact
soft cap stays under 30 s and 8 GiB of peak memory.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from filterbench.plugins import cap_race as cr
from filterbench.plugins.cap_sampling import soft_cap_batched

M = int(float(os.environ.get("FB_BENCH_CAP_M", "10e6")))
BIG = int(float(os.environ.get("FB_BENCH_CAP_BIG", "128e6")))
ALPHA = 0.15
# FLYT's notebook: 100k draws per round for M = N = 128M, i.e. 1,280 rounds; keep that ratio at M
G = max(1, round(M * 100_000 / 128_000_000))
ROUNDS_MEASURED = 5
#: the 128M goal (30 s) is 0.23 s per million uids; measured 0.11-0.21 at 10M under load
EXACT_S_PER_MILLION = 0.5
#: the goal: the exact sampler at least 100x faster than FLYT's batched loop at the notebook's G/M
MIN_SPEEDUP = 100
_COUNTS: dict[int, np.ndarray] = {}  # exact soft-cap counts by thread count


def _scores(size: int, seed: int = 0) -> np.ndarray:
    """N(0, 2.5^2) float32 scores, generated in chunks so the float64 temporaries stay small."""
    rng, out = np.random.default_rng(seed), np.empty(size, dtype=np.float32)
    for a in range(0, size, 1 << 22):
        out[a:a + (1 << 22)] = rng.normal(0.0, 2.5, min(1 << 22, size - a))
    return out


@pytest.fixture(scope="module")
def scores() -> np.ndarray:
    return _scores(M)


def notebook_soft_cap_rounds(z: np.ndarray, alpha: float, g: int, rounds: int, rng) -> list[np.ndarray]:
    """A straightforward port of FLYT's ``soft_cap_sampling`` loop: softmax, choice(replace=False), penalty.

    Runs ``rounds`` rounds on ``z`` in place and returns the drawn indices (the notebook concatenates them).
    """
    drawn = []
    for _ in range(rounds):
        p = np.exp(z - z.max())
        p /= p.sum()
        idx = rng.choice(len(z), size=g, replace=False, p=p)
        z[idx] -= alpha
        drawn.append(idx)
    return drawn


def _info(benchmark, **values) -> None:
    benchmark.extra_info.update({"cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                                 "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), **values})


@pytest.mark.parametrize("threads", [1, 2])
def test_exact_soft_cap(benchmark, scores, threads):
    tuning = cr.Tuning(threads=threads)
    args = (scores, M, cr.soft_cap_law(ALPHA), np.random.default_rng(1), tuning)
    counts = benchmark.pedantic(cr.race_counts, args=args, rounds=3, iterations=1)
    assert counts.sum() == M
    _info(benchmark, M=M, N=M, alpha=ALPHA, threads=threads, distinct=int(np.count_nonzero(counts)),
          max_count=int(counts.max()))
    _COUNTS[threads] = counts
    if len(_COUNTS) == 2:
        assert np.array_equal(_COUNTS[1], _COUNTS[2]), "the counts depend on the thread count"
    assert benchmark.stats.stats.mean < EXACT_S_PER_MILLION * M / 1e6


def test_exact_hard_cap(benchmark, scores):
    args = (scores, M, cr.hard_cap_law(15), np.random.default_rng(1), cr.Tuning(threads=2))
    counts = benchmark.pedantic(cr.race_counts, args=args, rounds=3, iterations=1)
    assert counts.sum() == M and counts.max() <= 15
    _info(benchmark, M=M, N=M, cap=15, threads=2, distinct=int(np.count_nonzero(counts)))
    assert benchmark.stats.stats.mean < EXACT_S_PER_MILLION * M / 1e6


def _extrapolate(benchmark, scores, per_round_s: float, label: str) -> None:
    rounds_needed = math.ceil(M / G)
    start = time.perf_counter()
    cr.race_counts(scores, M, cr.soft_cap_law(ALPHA), np.random.default_rng(1), cr.Tuning(threads=2))
    exact_s = time.perf_counter() - start
    total = per_round_s * rounds_needed
    _info(benchmark, M=M, N=M, alpha=ALPHA, G=G, algorithm=label, rounds_needed=rounds_needed,
          rounds_measured=ROUNDS_MEASURED, per_round_s=per_round_s, extrapolated_total_s=total,
          exact_s_same_process=exact_s, speedup_exact_vs_batched=total / exact_s)
    assert total / exact_s >= MIN_SPEEDUP, f"exact only {total / exact_s:.0f}x faster than {label}"


def test_notebook_batched_soft_cap(benchmark, scores):
    """Times ROUNDS_MEASURED rounds (each costs O(M), independent of the round index) and extrapolates."""
    z = scores.astype(np.float64)
    rng = np.random.default_rng(2)
    args = (z, ALPHA, G, ROUNDS_MEASURED, rng)
    benchmark.pedantic(notebook_soft_cap_rounds, args=args, rounds=1, iterations=1)
    per_round = benchmark.stats.stats.mean / ROUNDS_MEASURED
    _extrapolate(benchmark, scores, per_round, "notebook choice(replace=False)")


def test_notebook_batched_soft_cap_full_run_small(benchmark):
    """Checks the extrapolation: the whole notebook loop at M = N = M/10 (same G/M) vs 5 rounds x rounds."""
    size = M // 10
    g = max(1, round(size * 100_000 / 128_000_000))
    z, rng = _scores(size).astype(np.float64), np.random.default_rng(4)
    start = time.perf_counter()
    notebook_soft_cap_rounds(z.copy(), ALPHA, g, ROUNDS_MEASURED, rng)
    per_round = (time.perf_counter() - start) / ROUNDS_MEASURED
    rounds = math.ceil(size / g)
    args = (z, ALPHA, g, rounds, rng)
    drawn = benchmark.pedantic(notebook_soft_cap_rounds, args=args, rounds=1, iterations=1)
    assert sum(len(d) for d in drawn) == rounds * g
    _info(benchmark, M=size, N=size, alpha=ALPHA, G=g, rounds=rounds, per_round_s_first_rounds=per_round,
          extrapolated_total_s=per_round * rounds, measured_total_s=benchmark.stats.stats.mean)
    # the speed-ups above rest on this extrapolation: it may understate the batched cost (measured 41.7 s
    # against 36.6 s extrapolated), never overstate it by more than timing noise
    assert benchmark.stats.stats.mean >= 0.8 * per_round * rounds


def test_gumbel_batched_soft_cap(benchmark, scores):
    """Our ``batch=G`` form (Gumbel top-G per round), same extrapolation."""
    n = ROUNDS_MEASURED * G
    args = (scores, n, ALPHA, G, np.random.default_rng(3))
    counts = benchmark.pedantic(soft_cap_batched, args=args, rounds=1, iterations=1)
    assert counts.sum() == n
    _extrapolate(benchmark, scores, benchmark.stats.stats.mean / ROUNDS_MEASURED, "gumbel top-G (batch=G)")


CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from test_bench_cap_sampling import _scores
from filterbench.plugins import cap_race as cr
scores = _scores({size})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
law, tuning = cr.soft_cap_law({alpha}), cr.Tuning(threads=2)
counts = cr.race_counts(scores, {size}, law, np.random.default_rng(1), tuning)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(seconds=seconds, peak_rss_kib=peak, rss_before_kib=before, sum=int(counts.sum()),
                      distinct=int(np.count_nonzero(counts)), max_count=int(counts.max()))))
"""


def _big_run() -> dict:
    code = CHILD.format(here=os.path.dirname(__file__), size=BIG, alpha=ALPHA)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_exact_soft_cap_big(benchmark):
    """M = N = 128M in a fresh process, so its peak RSS is the sampler's (plus the 4-byte-per-uid input)."""
    result = benchmark.pedantic(_big_run, rounds=1, iterations=1)
    assert result["sum"] == BIG
    gib = 1024**2
    _info(benchmark, M=BIG, N=BIG, alpha=ALPHA, threads=2, sampler_seconds=result["seconds"],
          peak_rss_gib=result["peak_rss_kib"] / gib, rss_before_call_gib=result["rss_before_kib"] / gib,
          distinct=result["distinct"], max_count=result["max_count"])
    assert result["seconds"] < 30 and result["peak_rss_kib"] / gib < 8
