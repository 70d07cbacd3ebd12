"""Out-of-core check: score and sample a fabricated pool of tens of millions of rows on one small machine.

    python tools/bench_out_of_core.py fabricate DIR --rows 50000000 --shard-rows 100000 --dim 64
    python tools/bench_out_of_core.py floor DIR --workers 2        # just read every npz's features
    python tools/bench_out_of_core.py stages DIR WORK --workers 2  # pool + clip_score + top_fraction 0.3
    python tools/bench_out_of_core.py stages DIR WORK --workers 2 --executor ray  # the same on a local Ray

Each command runs in its own process and prints one JSON line: wall seconds per step and the peak resident
memory of this process and of its largest worker (``ru_maxrss``).  The pool is DataComp's layout without
images: a metadata parquet of uids per shard and an uncompressed npz with ``l14_img``/``l14_txt`` (float16,
``dim`` wide; DataComp's are 768 wide, which would need 153 GB at 50M rows).  Features are a fixed random
block, rolled per shard, so fabricating costs little CPU; uids are a seeded 128-bit sequence.
``tests/benchmarks/test_bench_out_of_core.py`` runs the three and asserts the targets.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def fabricate(root: Path, rows: int, shard_rows: int, dim: int, seed: int = 0) -> dict:
    from filterbench.harness.poolwrite import write_npz, write_parquet

    started = time.time()
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((shard_rows, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base = base.astype(np.float16)
    shards = (rows + shard_rows - 1) // shard_rows
    for s in range(shards):
        n = min(shard_rows, rows - s * shard_rows)
        stem = f"{s:08x}{'0' * 24}"
        if (root / "metadata" / f"{stem}.npz").is_file():
            continue
        words = rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)
        hexes = np.frombuffer(words.astype(">u8").tobytes().hex().encode(), dtype="S32").astype(str)
        write_parquet(root / "metadata" / f"{stem}.parquet", {"uid": hexes})
        write_npz(root / "metadata" / f"{stem}.npz",
                  {"l14_img": np.roll(base, s, axis=0)[:n], "l14_txt": np.roll(base, 3 * s + 1, axis=0)[:n]},
                  compress=False)
    return {"rows": rows, "shards": shards, "dim": dim, "fabricate_s": round(time.time() - started, 1)}


def _read_features(path: str) -> int:
    with np.load(path, allow_pickle=False) as npz:
        arrays = [np.asarray(npz[k], dtype=np.float32) for k in ("l14_img", "l14_txt")]
    return int(sum(a.nbytes for a in arrays))


def _read_and_score(path: str) -> int:
    from filterbench import get_scorer
    from filterbench.harness.contract import PoolBatch, StageContext

    with np.load(path, allow_pickle=False) as npz:
        features = {k: np.asarray(npz[k], dtype=np.float32) for k in ("l14_img", "l14_txt")}
    batch = PoolBatch("x", np.zeros(len(features["l14_img"])), {}, features)
    get_scorer("clip_score", model="l14").score_batch(batch, StageContext(rng=np.random.default_rng(0)))
    return 0


def floor(root: Path, workers: int) -> dict:
    """The time to read every npz's two feature arrays as float32 (what the score stage cannot avoid), and to
    read them and run clip_score's arithmetic on them (what any implementation of this scorer must do)."""
    from filterbench import get_scorer
    from filterbench.harness.executor import FunctionTask, LocalExecutor

    get_scorer("clip_score")  # load the plugins before the clock starts (forked workers inherit them)
    paths = [str(p) for p in sorted((root / "metadata").glob("*.npz"))]
    started = time.time()
    sizes = LocalExecutor(workers).map(FunctionTask(_read_features), paths, progress=False)
    read_s = time.time() - started
    started = time.time()
    LocalExecutor(workers).map(FunctionTask(_read_and_score), paths, progress=False)
    return {"floor_s": round(read_s, 2), "read_and_math_s": round(time.time() - started, 2), "workers": workers,
            "float32_gb": round(sum(sizes) / 1e9, 2)}


def stages(root: Path, work: Path, workers: int, executor_name: str = "local") -> dict:
    from filterbench import get_sampler, get_scorer
    from filterbench.harness.executor import ExecutorSpec, make_executor
    from filterbench.harness.pool import Pool
    from filterbench.harness.provenance import CostMeter
    from filterbench.harness.stages.pool import register_pool
    from filterbench.harness.stages.sample import run_sample
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.store import Store

    store, out = Store(work), {"workers": workers, "executor": executor_name}
    executor = make_executor(ExecutorSpec(executor_name, workers))
    if executor_name == "ray":
        started = time.time()
        executor.connect()
        out["ray_start_s"] = round(time.time() - started, 2)
    scorer, sampler = get_scorer("clip_score", model="l14"), get_sampler("top_fraction", fraction=0.3)
    meter = CostMeter().__enter__()  # the outer meter collects every stage's peak (stages reset the kernel's)
    started = time.time()  # (after loading the plugins: importing torch for other plugins is not the stages')
    pool = Pool(root)
    register_pool(store, pool)
    out["pool_s"] = round(time.time() - started, 2)
    started = time.time()
    scores = run_score(store, pool, scorer, executor=executor, progress=False)
    out["score_s"] = round(time.time() - started, 2)
    started = time.time()
    selection = run_sample(store, sampler, [scores], executor=executor)
    out["sample_s"] = round(time.time() - started, 2)
    out["kept"] = selection.manifest["stats"]["unique_uids"]
    out["rows"] = pool.size
    meter.__exit__(None, None, None)
    out["peak_rss_gb"] = round(meter.peak_rss_mb / 1024, 3)
    out["stage_peak_rss_gb"] = {"score": round(scores.manifest["cost"]["peak_rss_mb"] / 1024, 3),
                                "sample": round(selection.manifest["cost"]["peak_rss_mb"] / 1024, 3)}
    out["peak_worker_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 3)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fab = sub.add_parser("fabricate")
    fab.add_argument("root", type=Path)
    fab.add_argument("--rows", type=int, default=50_000_000)
    fab.add_argument("--shard-rows", type=int, default=100_000)
    fab.add_argument("--dim", type=int, default=64)
    flo = sub.add_parser("floor")
    flo.add_argument("root", type=Path)
    flo.add_argument("--workers", type=int, default=1)
    sta = sub.add_parser("stages")
    sta.add_argument("root", type=Path)
    sta.add_argument("work", type=Path)
    sta.add_argument("--workers", type=int, default=1)
    sta.add_argument("--executor", default="local", choices=["inline", "local", "ray"])
    args = parser.parse_args(argv)
    if args.command == "fabricate":
        result = fabricate(args.root, args.rows, args.shard_rows, args.dim)
    elif args.command == "floor":
        result = floor(args.root, args.workers)
    else:
        result = stages(args.root, args.work, args.workers, args.executor)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
