"""End to end, in-process: each mode feeds the model what its counts say (counted from the batches the
training step received), a finished training is reused, an interrupted one resumes from its checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from filterbench.harness.scales import resolve_scale
from filterbench.harness.stages.train import run_train
from filterbench.harness.training.feed import TrainingInterrupted, fed_counts
from filterbench.harness.training.plan import TrainError


@pytest.fixture(scope="module")
def trained(train_store, selections, tiny):
    """One tiny training per mode, with fed-uid counting on."""
    return {mode: run_train(train_store, sel, resolve_scale("nano-xs", tiny), count_fed=True)
            for mode, sel in selections.items()}


def test_multiset_feeds_every_uid_exactly_its_count(trained, selections, pool_uids):
    artifact = trained["multiset"]
    counts = np.load(selections["multiset"].path / "counts.npy")
    fed, strangers = fed_counts(artifact.path / "fed", pool_uids)
    assert strangers == 0 and fed.shape == (5, pool_uids.size)
    assert np.array_equal(fed.sum(axis=0), counts)  # one pass: each uid exactly count times
    assert np.array_equal(fed, np.load(artifact.path / "expected_counts.npy"))
    assert fed.sum(axis=1).tolist() == [128] * 5
    data = artifact.manifest["data"]
    assert data["padded"] == data["trimmed"] == data["missing_uids"] == 0
    assert data["batches_with_repeats"] == 0


def test_schedule_feeds_segment_e_in_epoch_e(trained, selections, pool_uids):
    counts = np.load(selections["schedule"].path / "counts.npy")
    fed, strangers = fed_counts(trained["schedule"].path / "fed", pool_uids)
    assert strangers == 0 and np.array_equal(fed, counts)


def test_subset_resamples_the_kept_uids_up_to_the_budget(trained, selections, pool_uids):
    artifact = trained["subset"]
    kept = np.load(selections["subset"].path / "counts.npy").astype(bool)
    fed, strangers = fed_counts(artifact.path / "fed", pool_uids)
    assert strangers == 0
    assert fed.sum() == artifact.manifest["budget"]["samples_fed"] == 640
    assert not fed[:, ~kept].any()  # nothing outside the subset
    assert "--dataset-resampled" in artifact.manifest["argv"]
    assert "--dataset-resampled" not in trained["multiset"].manifest["argv"]


def test_artifact_layout_manifest_and_checkpoint(trained):
    import open_clip
    import torch

    artifact = trained["schedule"]
    for name in ("checkpoints/epoch_latest.pt", "checkpoints/epoch_5.pt", "argv.json", "out.log", "params.txt"):
        assert (artifact.path / name).is_file(), name
    assert not (artifact.path / "data").exists()  # shards are deleted unless keep_data
    manifest = artifact.manifest
    assert json.loads((artifact.path / "argv.json").read_text()) == manifest["argv"]
    assert manifest["official"] is False and manifest["overrides"]["model"] == "filterbench-micro-vit"
    speed = manifest["throughput"]
    assert speed["samples_fed"] == 640 and speed["samples_per_s"] > 0 and len(speed["epochs"]) == 5
    assert manifest["cost"]["total"]["wall_s"] > 0 and manifest["cost"]["total"]["peak_rss_mb"] > 0
    checkpoint = torch.load(artifact.path / "checkpoints/epoch_latest.pt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 5
    model, _, _ = open_clip.create_model_and_transforms("filterbench-micro-vit",
                                                        pretrained=str(artifact.path / "checkpoints/epoch_5.pt"))
    assert torch.equal(model.logit_scale.detach(), checkpoint["state_dict"]["logit_scale"])


def test_rerunning_a_finished_training_is_a_no_op(trained, train_store, selections, tiny):
    first = trained["multiset"]
    stamp = (first.path / "checkpoints/epoch_latest.pt").stat().st_mtime_ns
    attempts = (first.path / "attempts.jsonl").read_text()
    again = run_train(train_store, selections["multiset"].key, resolve_scale("nano-xs", tiny))
    assert again.path == first.path and again.key == first.key
    assert (again.path / "checkpoints/epoch_latest.pt").stat().st_mtime_ns == stamp
    assert (again.path / "attempts.jsonl").read_text() == attempts  # nothing was launched


def test_interrupted_training_resumes_from_its_last_checkpoint(train_store, selections, pool_uids, tiny):
    selection = selections["multiset"]
    with pytest.raises(TrainingInterrupted):
        run_train(train_store, selection, resolve_scale("nano-xs", tiny), seed=1, count_fed=True, stop_at_epoch=3)
    partial = next(train_store.root.glob("train/.partial-*"))
    import torch

    assert torch.load(partial / "checkpoints/epoch_latest.pt", weights_only=False)["epoch"] == 3
    artifact = run_train(train_store, selection, resolve_scale("nano-xs", tiny), seed=1, count_fed=True)
    assert "=> resuming checkpoint" in (artifact.path / "out.log").read_text()
    assert artifact.manifest["throughput"]["attempts"] == 2
    fed, _ = fed_counts(artifact.path / "fed", pool_uids)
    assert np.array_equal(fed.sum(axis=0), np.load(selection.path / "counts.npy"))


def test_a_multiset_sampled_for_another_budget_is_refused(train_store, selections):
    with pytest.raises(TrainError, match="was sampled for samples_seen=640"):
        run_train(train_store, selections["multiset"], resolve_scale("nano-xs"))
