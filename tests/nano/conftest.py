"""One xs nano world per test session (built once, ~2 min on 2 idle cores), shared read-only by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def xs_world(tmp_path_factory):
    """The xs world.  ``FILTERBENCH_NANO_XS`` may name an already built xs world to reuse (development)."""
    from filterbench.harness.nano import NanoWorld, build_world

    prebuilt = os.environ.get("FILTERBENCH_NANO_XS")
    if prebuilt:
        return NanoWorld(Path(prebuilt))
    return build_world("xs", out=tmp_path_factory.mktemp("nano") / "xs", log=print)
