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
