"""Fixtures shared by the learned pixel scorers' tests (dfn, hype)."""

from __future__ import annotations

import json

import pytest

MICRO = "filterbench-micro-vit"


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory):
    """A folder shaped like a built world, small enough to train on in seconds: a 160-row pool (2 shards, a
    few failed downloads), 96 HQ pairs, two labelled sets and a micro open_clip checkpoint in the b32 and l14
    roles.  Read-only."""
    import open_clip
    import torch

    from filterbench.harness.assets import register_model_configs
    from filterbench.testing import fabricate_labelled_set, fabricate_pool

    root = tmp_path_factory.mktemp("micro_world")
    fabricate_pool(root / "pool", rows=160, shards=2, rows_per_tar=50, missing_images=0.05, seed=21)
    fabricate_pool(root / "aux" / "hq", rows=96, shards=1, seed=22)
    fabricate_labelled_set(root / "aux" / "downstream", rows=40, seed=23)
    fabricate_labelled_set(root / "aux" / "labelled" / "count", rows=30, classes=("one", "two", "three"), seed=24)
    register_model_configs()
    torch.manual_seed(25)
    (root / "models").mkdir()
    torch.save({"state_dict": open_clip.create_model(MICRO).state_dict()}, root / "models" / "micro.pt")
    models = {role: {"name": MICRO, "file": "models/micro.pt"} for role in ("b32", "l14")}
    (root / "manifest.json").write_text(json.dumps({"models": models}))
    return root
