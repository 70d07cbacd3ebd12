"""Out of core: score and sample a fabricated 50M-row pool within 4 GiB, near the cost of reading its features.

Skipped by the default run (``--benchmark-skip``).  Run on an otherwise idle machine (trap 5); the pool is
fabricated once (about 13 GB at the default width) and reused:

    OMP_NUM_THREADS=1 FILTERBENCH_BENCH_POOL=/tmp/ooc-50m .venv/bin/python -m pytest \
        tests/benchmarks/test_bench_out_of_core.py --benchmark-only --benchmark-json=bench-ooc.json

What is measured (each step in its own process, ``tools/bench_out_of_core.py``): reading every npz's two L/14
arrays as float32 (the floor), reading them and running clip_score's arithmetic on them (what any
implementation of this scorer must do), and the stages: registering the pool, ``clip_score`` and
``top_fraction 0.3`` (the map + reduce cut) on the local executor with 2 workers, with the peak resident memory
of the driver and of its largest worker.

Targets asserted: peak RSS below 4 GiB in the driver and in every worker at 50M rows (features 64 wide:
DataComp's 768-wide ones would need 153 GB, more than this machine's disk); at DataComp's width
(``test_throughput_at_datacomp_width``, ``FILTERBENCH_BENCH_WIDE_ROWS`` rows, default 2M, 6 GB) the score and
sample stages together within 1.5x of reading the features and doing clip_score's arithmetic on them.  The
ratio to the bare read is recorded, not asserted: at 64-wide features it is about 5x (per-row costs such as
parsing and writing 32-character uids dominate a 256-byte row), at 768 wide about 2.3x, of which clip_score's
float32 renormalisation is 0.9x.  docs/performance.md has the measured numbers and says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark(group="out of core")
TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_out_of_core.py"
ROWS = int(os.environ.get("FILTERBENCH_BENCH_ROWS", "50000000"))
WIDE_ROWS = int(os.environ.get("FILTERBENCH_BENCH_WIDE_ROWS", "2000000"))
WORKERS = 2
MAX_RSS_GB = 4.0
MAX_RATIO = 1.5


def _tool(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _measure(root: Path, work: Path, rows: int, dim: int, shard_rows: int = 10_000) -> dict:
    made = _tool("fabricate", str(root), "--rows", str(rows), "--shard-rows", str(shard_rows), "--dim", str(dim))
    floor = _tool("floor", str(root), "--workers", str(WORKERS))
    stages = _tool("stages", str(root), str(work), "--workers", str(WORKERS))
    stages["vs_read"] = round((stages["score_s"] + stages["sample_s"]) / floor["floor_s"], 2)
    stages["vs_read_and_math"] = round((stages["score_s"] + stages["sample_s"]) / floor["read_and_math_s"], 2)
    return {**made, **floor, **stages}


def test_fifty_million_rows_within_four_gib(benchmark, tmp_path):
    root = Path(os.environ.get("FILTERBENCH_BENCH_POOL", tmp_path / "pool"))
    result = benchmark.pedantic(_measure, args=(root, tmp_path / "work", ROWS, 64), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["rows"] == ROWS and result["kept"] == int(0.3 * ROWS)
    assert result["peak_rss_gb"] < MAX_RSS_GB and result["peak_worker_rss_gb"] < MAX_RSS_GB, result


def test_throughput_at_datacomp_width(benchmark, tmp_path):
    root = Path(os.environ.get("FILTERBENCH_BENCH_WIDE_POOL", tmp_path / "wide"))
    result = benchmark.pedantic(_measure, args=(root, tmp_path / "work", WIDE_ROWS, 768), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["vs_read_and_math"] <= MAX_RATIO, result
