"""The artifact store's guarantees, each with a test that fails when the guarantee is broken.

Completion is atomic under the build lock, concurrent builders wait instead of failing, stray temporaries never
reach a finished artifact, nothing on disk is trusted (edited outputs, edited manifests, added files, damaged
unit markers), and a stage refuses an input artifact changed after its completion.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time

import numpy as np
import pytest

from filterbench import get_sampler, get_scorer
from filterbench.harness import faults
from filterbench.harness.errors import StoreError
from filterbench.harness.locks import BuildLock
from filterbench.harness.pool import Pool
from filterbench.harness.stages.sample import run_sample
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.uidscorer import UidOnlyScorer

FORK = multiprocessing.get_context("fork")


def files_under(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _build(store: Store, name: str, pause_at: str | None = None, pause_s: float = 0.0) -> str:
    """A minimal stage: one output file; optionally sleep at a named fault point (an injected pause)."""
    if pause_at is not None:
        original = faults.point

        def pausing(where: str) -> None:
            if where == pause_at:
                time.sleep(pause_s)
            original(where)

        faults.point = pausing
    inputs = {"stage": "test", "name": name}
    key = store.key_for(inputs)
    with store.build("selections", name, key, inputs) as building:
        if building.done is not None:
            return f"reused {building.done.path}"
        (building.dir / "out.txt").write_text(name)
        building.add_output("out.txt")
        return f"built {building.finish({}).path}"


def _in_children(*targets) -> list[str]:
    """Run each callable in a forked child (started 0.2 s apart); returns what each returned or raised."""
    queue = FORK.Queue()

    def wrap(index, target):
        try:
            queue.put((index, target()))
        except BaseException as exc:  # noqa: BLE001 - report whatever the child died of
            queue.put((index, f"{type(exc).__name__}: {exc}"))

    children = []
    for i, target in enumerate(targets):
        child = FORK.Process(target=wrap, args=(i, target))
        child.start()
        children.append(child)
        time.sleep(0.2)
    results = dict(queue.get(timeout=60) for _ in children)
    for child in children:
        child.join(30)
    return [results[i] for i in range(len(targets))]


def _no_leftovers(store: Store) -> None:
    assert not list(store.root.rglob(".partial-*")), "a partial folder was left behind"
    assert not [p for p in store.root.rglob("*") if ".tmp-" in p.name], "a temporary file was left behind"
    assert not list((store.root / ".locks").glob("*")), "a lock file was left behind"


def test_completion_is_atomic_under_the_lock_and_a_second_builder_waits(workdir):
    """Issue 19.6: finish() released the lock before its rename; with a pause there both builders crashed."""
    store = Store(workdir)
    first, second = _in_children(lambda: _build(store, "same", "complete, not yet renamed", 1.0),
                                 lambda: _build(store, "same"))
    assert first.startswith("built ") and second.startswith("reused "), (first, second)
    assert first.split()[1] == second.split()[1]
    final = store.get("selections", "same", store.key_for({"stage": "test", "name": "same"}))
    final.verify()
    assert files_under(final.path) == ["_COMPLETE", "manifest.json", "out.txt"]
    _no_leftovers(store)


def test_concurrent_commands_wait_for_the_pool_registration_lock(tiny_pool, workdir):
    """Issue 19.7: two scorers started at once on a new pool; one failed on the pool-registration lock."""
    store = Store(workdir)

    def score(scorer, pause):
        from filterbench.harness.stages import pool as pool_stage

        original = pool_stage.check_pool
        pool_stage.check_pool = lambda *a, **k: (time.sleep(pause), original(*a, **k))[1]
        return str(run_score(store, Pool(tiny_pool), scorer, progress=False).path)

    results = _in_children(lambda: score(get_scorer("clip_score"), 1.5), lambda: score(UidOnlyScorer(), 0.0))
    assert all("/scores/" in r for r in results), results
    assert len(list((workdir / "pools").iterdir())) == 1
    _no_leftovers(store)


def test_a_waiting_command_says_so_and_times_out_in_one_line(workdir, monkeypatch, caplog):
    store = Store(workdir)
    key = store.key_for({"stage": "test", "name": "held"})
    monkeypatch.setenv("FILTERBENCH_LOCK_TIMEOUT", "0.6")
    with BuildLock(workdir / ".locks" / f"selections-held-{key}.lock", "held"):
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "filterbench.store"):
            with pytest.raises(StoreError, match=r"still locked by another process \(pid \d+\) after waiting"):
                _in_process_build = _build(store, "held")  # noqa: F841
        assert 0.5 < time.monotonic() - started < 5
    assert "waiting for another process" in caplog.text
    assert _build(store, "held").startswith("built ")  # released: the same command now goes through


def test_a_stray_temporary_in_the_partial_folder_is_not_carried_into_the_artifact(workdir):
    """Issue 19.10: a temporary left by a killed writer reached the finished artifact."""
    store = Store(workdir)
    inputs = {"stage": "test", "name": "stray"}
    key = store.key_for(inputs)
    with store.build("selections", "stray", key, inputs) as building:
        (building.dir / "parts").mkdir()
        (building.dir / "parts" / ".00001.parquet.tmp-4242").write_bytes(b"half a file")
        (building.dir / "counts.npy.tmp-4242.npy").write_bytes(b"half")
        (building.dir / "out.txt").write_text("x")
        artifact = building.finish({})
    assert files_under(artifact.path) == ["_COMPLETE", "manifest.json", "out.txt"]
    artifact.verify()


def test_verify_trusts_nothing_on_disk(workdir):
    store = Store(workdir)
    _build(store, "v")
    artifact = store.get("selections", "v", store.key_for({"stage": "test", "name": "v"}))
    (artifact.path / "extra.bin").write_bytes(b"added later")
    with pytest.raises(StoreError, match=r"extra.bin: file not listed in the manifest"):
        artifact.verify()
    (artifact.path / "extra.bin").unlink()
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    manifest["outputs"]["out.txt"]["rows"] = 7  # a plausible edit that keeps the JSON valid
    (artifact.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"manifest.json: manifest differs from the digest in _COMPLETE"):
        artifact.verify()


def test_store_get_refuses_an_output_edited_after_completion(tiny_pool, store):
    """Mutant 'Store.get skips its digest checks': an edited output must be refused, naming the file."""
    pool = Pool(tiny_pool)
    first = run_score(store, pool, get_scorer("clip_score"), progress=False)
    part = first.path / "parts" / f"{pool.shards[0].stem}.parquet"
    part.write_bytes(part.read_bytes()[:-9] + b"\0" * 9)
    with pytest.raises(StoreError, match=rf"{part.name}: digest differs from the manifest"):
        store.get("scores", "clip_score", first.key)
    with pytest.raises(StoreError, match=rf"{part.name}: digest differs"):
        run_score(store, pool, get_scorer("clip_score"), progress=False)


def test_a_stage_refuses_an_input_artifact_edited_after_completion(tiny_pool, store):
    """Issue 19.1: sample read a score part edited after completion and gave a selection under the same key."""
    pool = Pool(tiny_pool)
    scores = run_score(store, pool, get_scorer("clip_score"), progress=False)
    part = scores.path / "parts" / f"{pool.shards[1].stem}.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(part)
    forged = table.set_column(1, "score", pa.array(np.ones(table.num_rows, np.float32)))
    pq.write_table(forged, part, compression="zstd")  # a valid parquet, other numbers
    sampler = get_sampler("top_fraction", fraction=0.3)
    with pytest.raises(StoreError, match=rf"{part.name}: digest differs from the manifest"):
        run_sample(store, sampler, [store.find(scores.key[:8], kind="scores")])
    assert not (store.root / "selections").exists() or not list((store.root / "selections").glob("top_*"))


def test_same_store_other_seed_is_a_new_key_and_the_same_seed_a_cache_hit(tiny_pool, store):
    """Mutant 'the score key leaves out the seed': seed tests used a fresh store each, so no hit was checked."""
    pool = Pool(tiny_pool)
    zero = run_score(store, pool, get_scorer("negcliploss"), seed=0, progress=False)
    stamp = (zero.path / "_COMPLETE").stat().st_mtime_ns
    again = run_score(store, pool, get_scorer("negcliploss"), seed=0, progress=False)
    assert again.path == zero.path and (again.path / "_COMPLETE").stat().st_mtime_ns == stamp
    one = run_score(store, pool, get_scorer("negcliploss"), seed=1, progress=False)
    assert one.key != zero.key and one.path != zero.path
    assert one.manifest["inputs"]["seed"] == 1


def test_a_damaged_unit_reruns_and_only_that_unit(tiny_pool, store):
    """Mutant 'a damaged per-unit marker is trusted': a damaged unit (file or marker) must run again."""
    from filterbench.harness.stages.score import score_inputs
    from filterbench.harness.stages.pool import register_pool

    pool = Pool(tiny_pool)
    scorer = get_scorer("clip_score")
    inputs = score_inputs(scorer, register_pool(store, pool).key, [], 0)
    key = store.key_for(inputs)
    with store.build("scores", "clip_score", key, inputs) as building:
        for shard in pool.shards:
            (building.dir / "parts").mkdir(exist_ok=True)
            (building.dir / f"parts/{shard.stem}.parquet").write_bytes(b"not yet damaged")
            building.mark_unit(shard.stem, [f"parts/{shard.stem}.parquet"])
        first, second = pool.shards
        assert building.unit_done(first.stem) is not None
        (building.dir / f"parts/{first.stem}.parquet").write_bytes(b"damaged")  # the file changed
        (building.dir / f"units/{second.stem}.json").write_text('{"unit": "')  # a torn marker
        assert building.unit_done(first.stem) is None
        assert building.unit_done(second.stem) is None
        assert not (building.dir / f"units/{second.stem}.json").exists()


def test_a_kill_after_completion_but_before_the_rename_is_finished_by_the_next_builder(workdir):
    store = Store(workdir)
    child = FORK.Process(target=lambda: (faults.arm(kill_at=None), _arm_kill_at("complete, not yet renamed"),
                                         _build(store, "late")))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    assert list(workdir.glob("selections/.partial-late-*/_COMPLETE"))
    assert _build(store, "late").startswith("reused ")
    _no_leftovers(store)


def test_a_completed_partial_folder_damaged_before_its_rename_is_rebuilt_not_reused(workdir):
    """Mutant 'a partial folder with _COMPLETE is renamed into place unverified': a kill between completion and
    rename leaves a finished-looking partial folder; if a file in it was damaged meanwhile, the next builder
    must build again, not publish the damaged file."""
    store = Store(workdir)
    child = FORK.Process(target=lambda: (_arm_kill_at("complete, not yet renamed"), _build(store, "late")))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    (partial,) = workdir.glob("selections/.partial-late-*")
    (partial / "out.txt").write_text("damaged")
    result = _build(store, "late")
    assert result.startswith("built "), result
    artifact = store.find(result.split()[1])
    artifact.verify()
    assert (artifact.path / "out.txt").read_text() == "late"
    _no_leftovers(store)


def _arm_kill_at(name: str) -> None:
    original = faults.point

    def kill_here(where: str) -> None:
        if where == name:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        original(where)

    faults.point = kill_here
