"""Fixtures of the executor tests: a pool cut into several shards, and artifact comparison by bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from filterbench.testing import fabricate_pool


@pytest.fixture(scope="session")
def shard_pool(tmp_path_factory) -> Path:
    """480 uids in 4 metadata shards (4 units per stage) with b32/l14 features and image tars."""
    return fabricate_pool(tmp_path_factory.mktemp("shard_pool") / "pool", rows=480, shards=4, seed=3,
                          rows_per_tar=120)
