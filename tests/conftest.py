"""Shared fixtures: a fabricated DataComp-format pool (session-wide, read-only) and a fresh work directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# one thread per process: parallel test work on 2 cores must not oversubscribe (ecosystem trap 5)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory) -> Path:
    """600 uids in 2 metadata shards with b32/l14 features and image tars.  Do not modify it."""
    from filterbench.testing import fabricate_pool

    return fabricate_pool(tmp_path_factory.mktemp("tiny_pool") / "pool", rows=600, shards=2, seed=0)


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "work"
    monkeypatch.setenv("FILTERBENCH_HOME", str(path))
    return path


@pytest.fixture()
def store(workdir):
    from filterbench.harness.store import Store

    return Store(workdir)


@pytest.fixture(scope="session")
def xs_world(tmp_path_factory):
    """One xs nano world per test session (built once, ~2.5 min on 2 idle cores), shared read-only by
    tests/nano and the plugins' nano tests.  ``FILTERBENCH_NANO_XS`` may name an already built xs world to reuse
    (development)."""
    import os

    from filterbench.harness.nano import NanoWorld, build_world

    prebuilt = os.environ.get("FILTERBENCH_NANO_XS")
    if prebuilt:
        return NanoWorld(Path(prebuilt))
    return build_world("xs", out=tmp_path_factory.mktemp("nano") / "xs", log=print)


@pytest.fixture()
def plugin_site(tmp_path, monkeypatch):
    """An installer of out-of-tree plugins: ``install(dist, module, source)`` writes an importable module plus
    a dist-info declaring it under the ``filterbench`` entry-point group, and forgets the process-wide plugin
    set so that the next command loads it (and forgets it again afterwards).  ``install.path`` is the folder
    (put it on PYTHONPATH for a subprocess)."""
    import importlib
    import textwrap

    from filterbench.harness import manager

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[filterbench]\n{entry_name or module} = {module}\n")
        importlib.invalidate_caches()
        manager.reset_plugins()
        return site

    install.path = site
    manager.reset_plugins()
    yield install
    manager.reset_plugins()


@pytest.fixture(scope="session")
def toy_eval(tmp_path_factory):
    """A store holding one train artifact (a random-init micro ViT checkpoint), three toy classification eval
    sets and a task list over them: the eval stage end to end in about a second.  Copy the store to use it.

    Returns ``(store root, train key, eval sets folder, task list file)``.
    """
    import numpy as np
    import open_clip
    import torch

    from filterbench.harness.evaluation import evalsets as ev
    from filterbench.harness.store import Store
    from filterbench.harness.training.models import register_model_configs

    root = tmp_path_factory.mktemp("toy_eval")
    register_model_configs()
    store = Store(root / "store")
    inputs = {"stage": "train", "fake": "random-init micro ViT"}
    with store.build("train", "fake", store.key_for(inputs), inputs) as building:
        torch.manual_seed(0)
        model = open_clip.create_model("filterbench-micro-vit")
        (building.dir / "checkpoints").mkdir()
        torch.save({"state_dict": model.state_dict()}, building.dir / "checkpoints" / "epoch_latest.pt")
        train = building.finish({"model": "filterbench-micro-vit", "checkpoint": "checkpoints/epoch_latest.pt"})
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(24)]
    labels = [i % 3 for i in range(24)]
    sets = root / "evalsets"
    for task in ("toy-a", "toy-b", "toy-c"):
        ev.write_classification_evalset(sets / f"wds_{task}_test", images, labels, ["red", "green", "blue"],
                                        ["a photo of {c}."], shard_size=12)
    tasklist = root / "toy_v1.yaml"
    tasklist.write_text("format: filterbench-tasklist/1\nname: toy\nversion: 1\ntasks:\n"
                        "  toy/a: {name: A}\n  toy/b: {name: B}\n  toy/c: {name: C}\n"
                        "groups:\n  AB: [toy/a, toy/b]\naverage: {name: Average}\n")
    return store.root, train.key, sets, tasklist


# property tests (hypothesis): derandomised, so a failure reproduces on every run and machine, and no example
# database is written into the checkout
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("filterbench", derandomize=True, deadline=None, database=None,
                                      max_examples=60, print_blob=True)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "filterbench"))
