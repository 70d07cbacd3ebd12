"""FLYT's training step on CPU against the upstream batch size (the fit's cost is steps x seconds per step).

Skipped by the default run (``--benchmark-skip``).  Run on an otherwise idle machine (trap 5):

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/benchmarks/test_bench_flyt.py -o \
        addopts="--import-mode=importlib" --benchmark-only --benchmark-json=bench-flyt.json

Workload: the nano default world's B/32-role reference model (``nano-ref-b32``: ViT, 3 layers of width 96,
32 px images; text 2 x 64) and its downstream set; ``FILTERBENCH_BENCH_WORLD`` names a built default world
(else it is built, ~8 minutes).  Each benchmark times single training steps (upstream batch B, downstream
batch 3B/4, as the nano recipe's 256/192) after one warm-up step; ``extra_info`` holds the CPU seconds per step
and per upstream sample.  The targets asserted: the nano recipe's step (B = 256) stays under 2.5 s of CPU, so
its 400-step fit stays under ~17 minutes of one core even on a shared machine (measured ~1.2 s idle), and no
batch size costs more than ``MAX_MS_PER_ROW`` ms of CPU per upstream row (measured 5.0-7.6: the step is linear
in B, so a regression that grows with the batch fails at every size).
On a GPU the same code runs with ``device=cuda``; no GPU was lent when this was measured (docs/performance.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

BATCHES = (64, 128, 256, 512)
MAX_MS_PER_ROW = 12.0


@pytest.fixture(scope="module")
def world():
    from filterbench.harness.nano import NanoWorld, get_world

    prebuilt = os.environ.get("FILTERBENCH_BENCH_WORLD")
    return NanoWorld(Path(prebuilt)) if prebuilt else get_world("default")


def _fit(world, tmp: Path, batch: int):
    from filterbench.harness.samples import PoolSamples
    from filterbench.plugins.flyt.dist import SINGLE
    from filterbench.plugins.flyt.fitting import _features
    from filterbench.plugins.flyt.scorers import FlytScorer
    from filterbench.plugins.flyt.trainer import Fit, FitSpec

    pool = world.pool()
    rows = np.flatnonzero(PoolSamples(pool).available)
    np.save(tmp / "candidates.npy", rows)
    np.save(tmp / "inputs.npy", _features(FlytScorer(), pool, rows))
    spec = FitSpec(kind="flyt", pool_root=str(pool.root), inputs_path=str(tmp / "inputs.npy"),
                   candidates_path=str(tmp / "candidates.npy"), reference_model="world:b32",
                   reference_checkpoint=None, downstream="world:downstream", loss="ce_temp", steps=10,
                   up_batch=batch, down_batch=3 * batch // 4, lr_reference=5e-5, lr_scoring=1e-3, warmup=2,
                   update_reference=True, weight_decay=0.2, seed=0, checkpoint_dir=str(tmp),
                   state_dir=str(tmp), checkpoint_every=100)
    return Fit(spec, SINGLE)


@pytest.mark.parametrize("batch", BATCHES)
def test_bench_flyt_step(benchmark, world, tmp_path, batch):
    import torch

    torch.set_num_threads(1)
    fit = _fit(world, tmp_path, batch)
    fit.train_step()  # warm-up: first-call allocations
    cpu: list[float] = []

    def step():
        started = time.process_time()
        fit.train_step()
        cpu.append(time.process_time() - started)

    benchmark.pedantic(step, rounds=3, iterations=1)
    per_step = float(np.median(cpu))
    benchmark.extra_info.update({"cpu_s_per_step": per_step, "cpu_ms_per_upstream_sample": 1000 * per_step / batch,
                                 "load_avg_1m": os.getloadavg()[0]})
    assert 1000 * per_step / batch < MAX_MS_PER_ROW, per_step
    if batch == 256:
        assert per_step < 2.5, per_step
