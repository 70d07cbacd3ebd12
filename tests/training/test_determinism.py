"""Same inputs, same bytes: a training run again from scratch gives the same weights.

Subset-mode training goes through open_clip_train's own webdataset loader, whose sample-level shuffle buffer
webdataset would seed from the process id and the clock; the launcher seeds it from the run seed and the epoch
(harness/training/launcher.py).  Planned modes (multiset, schedule) read a planned order and are covered too.
"""

from __future__ import annotations

import pytest
import torch
from filterbench.harness.scales import resolve_scale
from filterbench.harness.stages.train import run_train
from filterbench.harness.store import Store


def _weights(artifact) -> dict[str, torch.Tensor]:
    return torch.load(artifact.path / "checkpoints/epoch_latest.pt", map_location="cpu",
                      weights_only=False)["state_dict"]


def _copy_inputs(source: Store, target: Store) -> None:
    """Give a fresh store the pool and selection artifacts (no training), so nothing is reused."""
    import shutil

    for kind in ("pools", "selections", "scores"):
        for folder in (source.root / kind).glob("*"):
            if not (target.root / kind / folder.name).exists():
                shutil.copytree(folder, target.root / kind / folder.name)


def _train_in_fresh_store(root, train_store, selection, tiny, seed: int = 7):
    store = Store(root)
    _copy_inputs(train_store, store)
    return run_train(store, selection.key, resolve_scale("nano-xs", tiny), seed=seed)


@pytest.fixture(scope="module")
def twice(train_store, selections, tiny, tmp_path_factory):
    """Each mode trained twice, each time in a fresh store."""
    root = tmp_path_factory.mktemp("twice")
    return {mode: [_train_in_fresh_store(root / f"{mode}-{n}", train_store, selections[mode], tiny) for n in (1, 2)]
            for mode in ("subset", "multiset")}


@pytest.mark.parametrize("mode", ["subset", "multiset"])
def test_training_twice_from_scratch_gives_identical_weights(mode, twice):
    first, second = twice[mode]
    assert first.key == second.key and first.path != second.path
    a, b = _weights(first), _weights(second)
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{len(differing)} of {len(a)} tensors differ, e.g. {differing[:3]}"


def test_another_seed_gives_other_weights(twice, train_store, selections, tiny, tmp_path):
    """The check above can fail: another training seed changes the weights (init and shuffle)."""
    other = _train_in_fresh_store(tmp_path / "other", train_store, selections["subset"], tiny, seed=8)
    a, b = _weights(twice["subset"][0]), _weights(other)
    assert any(not torch.equal(a[k], b[k]) for k in a)
