"""Fault injection: every stage killed with SIGKILL at seeded random moments, then rerun, ends byte for byte
where an uninterrupted run ends, and no kill ever leaves a finished artifact that ``show --verify`` rejects.

Moments are of two kinds.  *Fault points* (:mod:`filterbench.harness.faults`): every atomic rename, every unit
marker, every step of an artifact's completion; a forked child arms them and SIGKILLs itself at the n-th.  *Times*:
the parent SIGKILLs the child after a seeded random delay within the stage's uninterrupted duration.  The default
run tries a few of each per stage (seed ``FILTERBENCH_FAULT_SEED``, default 19); ``-m soak`` tries every fault
point and many times (minutes).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from tqdm import tqdm

from filterbench.harness import faults
from filterbench.harness.contract import Needs, Params, Scorer
from filterbench.harness.store import COMPLETE, MANIFEST, Store

FORK = multiprocessing.get_context("fork")
SEED = int(os.environ.get("FILTERBENCH_FAULT_SEED", "19"))
POINTS_PER_STAGE = 4  # fault points tried per stage in the default run
TIMES_PER_STAGE = 2  # random-time kills per stage in the default run
#: manifest fields that legitimately differ between two runs of the same stage
VOLATILE = {"created_at", "provenance", "cost", "task_seconds"}


class FittedLength(Scorer):
    """A learned scorer in miniature: fit() checkpoints every step and saves a mean; scoring subtracts it."""

    name = "fitted_length"
    needs = Needs(metadata=("text",))

    class Params(Params):
        steps: int = 6

    def fit(self, pool, ctx):
        marker = ctx.checkpoint_dir / "step.json"
        start = json.loads(marker.read_text())["step"] if marker.exists() else 0
        for step in range(start, self.params.steps):
            time.sleep(0.01)
            # written as real plugins write checkpoints (temporary name, rename): a kill in the middle of a plain
            # write_text leaves an empty marker, a plugin bug that a random-time kill finds
            partial = marker.with_name(f".{marker.name}.tmp-{os.getpid()}")
            partial.write_text(json.dumps({"step": step + 1}))
            os.replace(partial, marker)
        texts = np.concatenate([pool.read_metadata(s, ("text",))["text"] for s in pool.shards])
        np.save(ctx.state_dir / "mean.npy", np.array([np.mean([len(t) for t in texts])]))

    def score_batch(self, batch, ctx):
        mean = float(np.load(ctx.state_dir / "mean.npy")[0])
        return np.array([len(t) - mean for t in batch.metadata["text"]], dtype=np.float32)


# -- the harness of the harness -----------------------------------------------------------------------------------
def _in_child(work: Callable[[], None], kill_at: int | None = None, kill_after_s: float | None = None) -> int:
    """Run ``work`` in a forked child; SIGKILL it at fault point ``kill_at`` or after ``kill_after_s``.
    Returns the child's exit code (-9 when killed)."""

    def child() -> None:
        # tqdm's write lock is a multiprocessing lock shared with the parent across fork: a child SIGKILLed while
        # drawing a progress bar would leave it held and hang the parent's next bar.  A real user's kill ends the
        # whole process, so only this harness shares it; the child takes a lock of its own.
        tqdm.set_lock(threading.RLock())
        if kill_at is not None:
            faults.arm(kill_at)
        work()

    process = FORK.Process(target=child)
    process.start()
    if kill_after_s is not None:
        process.join(kill_after_s)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
    process.join(120)
    assert process.exitcode is not None, "the stage hung"
    return process.exitcode


def _count_points(work: Callable[[], None]) -> tuple[list[str], float]:
    faults.arm(None)
    started = time.monotonic()
    try:
        work()
    finally:
        names = faults.disarm()
    return names, time.monotonic() - started


def fingerprint(folder: Path, root: Path) -> dict:
    """What must be identical after a kill and a rerun: every file's bytes (paths under the store rewritten),
    and the manifest without the fields that record when and how fast."""
    prints = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        if name == MANIFEST:
            manifest = {k: v for k, v in json.loads(data).items() if k not in VOLATILE}
            if isinstance(manifest.get("fit"), dict):
                manifest["fit"] = {k: v for k, v in manifest["fit"].items() if k not in VOLATILE}
            for section in ("unit_stats", "throughput"):  # measured seconds and rates beside counts
                if isinstance(manifest.get(section), dict):
                    manifest[section] = {k: v for k, v in manifest[section].items() if not _timing(k)}
            data = json.dumps(manifest, sort_keys=True).encode()
        elif name == COMPLETE:
            data = data.split(b"\n")[0]  # the key; the manifest digest covers volatile fields
        if name == "costs.jsonl" or (folder.name.startswith(".partial-") and _bookkeeping(name)):
            continue  # each attempt's cost, appended; a partial folder's resume state (completion removes it)
        prints[name] = data.replace(str(root).encode(), b"<store>")
    return prints


def _timing(name: str) -> bool:
    """``unit_cpu_s``, ``decode_s``, ``images_per_s``: how fast, not what was computed."""
    return name.endswith("_s")


def _bookkeeping(name: str) -> bool:
    from filterbench.harness.atomic import is_temporary

    return name.startswith("units/") or name == "inputs.json" or is_temporary(Path(name).name)


def _verify_everything(store: Store) -> None:
    """What `show --verify` checks, on every finished artifact, and no half-finished one in plain sight."""
    for artifact in store.iter_artifacts():
        artifact.verify()
    for kind_dir in (p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in kind_dir.iterdir():
            if not folder.name.startswith(".partial-"):
                assert (folder / COMPLETE).is_file(), f"{folder}: a final-looking folder without {COMPLETE}"


def _moments(n_points: int, duration: float, soak: bool) -> list[tuple[int | None, float | None]]:
    rng = random.Random(SEED * 7919 + n_points)
    if soak:
        points = list(range(1, n_points + 1))
        times = [rng.uniform(0, duration) for _ in range(12)]
    else:
        points = sorted(rng.sample(range(1, n_points + 1), min(POINTS_PER_STAGE, n_points)))
        times = [rng.uniform(0, duration) for _ in range(TIMES_PER_STAGE)]
    return [(p, None) for p in points] + [(None, t) for t in times]


def check_stage(prepare: Callable[[Store], None], run: Callable[[Store], Path], tmp_path: Path,
                soak: bool = False) -> int:
    """Kill ``run`` at seeded moments in stores set up by ``prepare``; each rerun must match a clean run."""
    clean = Store(tmp_path / "clean")
    prepare(clean)
    names, duration = _count_points(lambda: run(clean))
    expected = fingerprint(run(clean), clean.root)
    assert names, "the stage reached no fault point"
    for i, (point, after) in enumerate(_moments(len(names), duration, soak)):
        store = Store(tmp_path / f"killed-{i}")
        prepare(store)
        code = _in_child(lambda: run(store), kill_at=point, kill_after_s=after)
        where = f"fault point {point} ({names[point - 1]})" if point else f"{after:.3f} s"
        assert code in (0, -signal.SIGKILL), f"killed at {where}: exit {code}"
        _verify_everything(store)
        result = run(store)
        assert fingerprint(result, store.root) == expected, f"killed at {where}: the rerun differs"
        _verify_everything(store)
        shutil.rmtree(store.root)
    return len(names)


# -- the stages --------------------------------------------------------------------------------------------------
@pytest.fixture()
def stages(tiny_pool, tmp_path):
    """``{stage: (prepare, run)}``; prepare copies the inputs a stage needs into a fresh store."""
    from filterbench import get_sampler, get_scorer
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.pool import register_pool
    from filterbench.harness.stages.sample import run_sample
    from filterbench.harness.stages.score import run_score

    pool = Pool(tiny_pool)
    base = Store(tmp_path / "base")
    scores = run_score(base, pool, get_scorer("clip_score"), progress=False)

    def from_base(store: Store) -> None:
        shutil.copytree(base.root, store.root, ignore=shutil.ignore_patterns("selections", ".locks"))

    def nothing(store: Store) -> None:
        store.root.mkdir(parents=True)

    def sample(store: Store) -> Path:
        artifacts = [store.find(scores.key, kind="scores")]
        return run_sample(store, get_sampler("top_fraction", fraction=0.5), artifacts).path

    return {
        "pool": (nothing, lambda store: register_pool(store, pool).path),
        "score+fit": (nothing, lambda store: run_score(store, pool, FittedLength(), progress=False).path),
        "sample": (from_base, sample),
    }


@pytest.mark.parametrize("stage", ["pool", "score+fit", "sample"])
def test_a_killed_stage_resumes_to_the_same_bytes(stages, stage, tmp_path):
    prepare, run = stages[stage]
    assert check_stage(prepare, run, tmp_path) >= 3


def test_a_killed_fit_resumes_from_its_checkpoints_to_the_same_fit(tiny_pool, tmp_path):
    """The fit artifact itself (not only the score built on it) is byte-identical after kills."""
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.pool import register_pool
    from filterbench.harness.stages.fit import run_fit

    pool = Pool(tiny_pool)

    def fit(store: Store) -> Path:
        return run_fit(store, pool, FittedLength(), register_pool(store, pool).key, [], 0).path

    check_stage(lambda store: store.root.mkdir(parents=True), fit, tmp_path)


@pytest.fixture()
def train_prepare(tiny_pool, tmp_path):
    """The train stage up to its launch: plan, reshard, launch spec (the slurm launcher stops there)."""
    from filterbench import get_sampler, get_scorer
    from filterbench.harness.contract import Budget
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.sample import run_sample
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.scales import resolve_scale
    from filterbench.harness.stages.train import run_train

    base = Store(tmp_path / "base")
    scores = run_score(base, Pool(tiny_pool), get_scorer("clip_score"), progress=False)
    selection = run_sample(base, get_sampler("top_fraction", fraction=0.5), [scores],
                           budget=Budget(samples_seen=640, segments=5, pool_size=0))
    tiny = {"samples_seen": 640, "batch_size": 32, "segments": 5, "warmup": 2, "model": "filterbench-micro-vit",
            "workers": 1}

    def prepare(store: Store) -> None:
        shutil.copytree(base.root, store.root, ignore=shutil.ignore_patterns(".locks"))

    def run(store: Store) -> Path:
        script = run_train(store, selection.key, resolve_scale("nano-xs", tiny), launcher="slurm", workers=1)
        return Path(script).parent  # the partial folder, prepared and waiting for sbatch

    return prepare, run


def test_a_killed_train_preparation_resumes_to_the_same_shards(train_prepare, tmp_path):
    prepare, run = train_prepare
    assert check_stage(prepare, run, tmp_path) >= 10


@pytest.fixture()
def eval_stage(toy_eval):
    """The eval stage on the toy store: a random-init micro ViT, three toy tasks."""
    from filterbench.harness.stages.evaluate import run_eval

    base, train_key, sets, tasklist = toy_eval

    def prepare(store: Store) -> None:
        shutil.copytree(base, store.root, ignore=shutil.ignore_patterns(".locks"))

    def run(store: Store) -> Path:
        return run_eval(store, store.find(train_key, kind="train"), evalsets=sets, tasklist=tasklist).path

    return prepare, run


def test_a_killed_evaluation_resumes_to_the_same_results(eval_stage, tmp_path):
    prepare, run = eval_stage
    assert check_stage(prepare, run, tmp_path) >= 5


def test_a_killed_leaderboard_build_leaves_old_or_new_files_and_rebuilds_the_same(tmp_path):
    from filterbench.leaderboard.build import build_leaderboard
    from filterbench.leaderboard.records import DEFAULT_RECORDS_DIR

    records = tmp_path / "records"
    shutil.copytree(DEFAULT_RECORDS_DIR / "nano", records / "nano")
    clean = build_leaderboard(records, tmp_path / "clean")
    expected = {p.name: p.read_bytes() for p in clean}
    names, duration = _count_points(lambda: build_leaderboard(records, tmp_path / "count"))
    for i, (point, after) in enumerate(_moments(len(names), duration, soak=False)):
        out = tmp_path / f"board-{i}"
        code = _in_child(lambda: build_leaderboard(records, out), kill_at=point, kill_after_s=after)
        assert code in (0, -signal.SIGKILL)
        for path in out.glob("*") if out.is_dir() else ():
            assert path.name.startswith(".") or path.read_bytes() == expected[path.name], (point, after, path)
        rebuilt = build_leaderboard(records, out)
        assert {p.name: p.read_bytes() for p in rebuilt} == expected
        assert not [p for p in out.iterdir() if p.name not in expected and ".tmp-" not in p.name]


@pytest.mark.soak
@pytest.mark.parametrize("stage", ["pool", "score+fit", "sample"])
def test_soak_every_fault_point(stages, stage, tmp_path):
    prepare, run = stages[stage]
    check_stage(prepare, run, tmp_path, soak=True)


@pytest.mark.soak
def test_soak_train_preparation(train_prepare, tmp_path):
    check_stage(*train_prepare, tmp_path, soak=True)


@pytest.mark.soak
def test_soak_evaluation(eval_stage, tmp_path):
    check_stage(*eval_stage, tmp_path, soak=True)
