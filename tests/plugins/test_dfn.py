"""``dfn``: a CLIP trained on HQ pairs (and optionally fine-tuned on templated labelled sets) scoring from pixels."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from filterbench.harness.errors import PluginError
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.plugins import _cliptrain
from filterbench.plugins.dfn import DfnScorer

FAST = {"steps": 12, "train_batch": 16, "warmup": 2, "checkpoint_every": 5, "batch_size": 32}


def _weights(artifact) -> dict[str, torch.Tensor]:
    return torch.load(artifact.path / "fit" / "model.pt", weights_only=True)["state_dict"]


def _score(artifact) -> np.ndarray:
    return np.concatenate([pq.read_table(artifact.path / "parts" / f"{s}.parquet").column("score").to_numpy()
                           for s in artifact.manifest["parts"]])


def test_fit_is_deterministic_for_a_seed_and_changes_with_it(micro_world, tmp_path):
    pool = Pool(micro_world / "pool")
    runs = [run_score(Store(tmp_path / name), pool, DfnScorer(**FAST), seed=seed, progress=False)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    a, b, c = (_weights(r) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert runs[0].key == runs[1].key and (runs[0].path / "parts").is_dir()
    np.testing.assert_array_equal(_score(runs[0]), _score(runs[1]))
    stats = runs[0].manifest["fit_stats"]
    assert {"hq_first_loss", "hq_last_loss", "hq_val_before_loss", "hq_val_loss"} <= set(stats)
    network = json.loads((runs[0].path / "fit" / "network.json").read_text())
    assert network["trained"] and network["start"]["source"] == "world:b32"


def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_weights(micro_world, tmp_path, monkeypatch):
    pool = Pool(micro_world / "pool")
    original = _cliptrain.Trainer._step

    def dying(self, phase, optimizer, step):
        if step == 8:
            raise RuntimeError("killed")
        return original(self, phase, optimizer, step)

    monkeypatch.setattr(_cliptrain.Trainer, "_step", dying)
    with pytest.raises(PluginError, match="scorer 'dfn' failed in fit: RuntimeError: killed"):
        run_score(Store(tmp_path / "killed"), pool, DfnScorer(**FAST), progress=False)
    partial = next((tmp_path / "killed" / "fits").glob(".partial-*"))
    assert torch.load(partial / "checkpoints" / "latest.pt", weights_only=False)["step"] == 5
    monkeypatch.setattr(_cliptrain.Trainer, "_step", original)
    resumed = run_score(Store(tmp_path / "killed"), pool, DfnScorer(**FAST), progress=False)
    fresh = run_score(Store(tmp_path / "fresh"), pool, DfnScorer(**FAST), progress=False)
    a, b = _weights(resumed), _weights(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_captions_labelled_sets_with_their_templates(micro_world, tmp_path):
    from filterbench.harness.assets import resolve_labelled

    source = _cliptrain.LabelledSource(resolve_labelled("world:labelled/count", micro_world / "pool"))
    images, captions = source.read(np.arange(6), np.random.default_rng(0))
    labels = source.samples.labels[:6]
    for caption, label in zip(captions, labels):
        assert caption in {t.format(c=source.classnames[label]) for t in source.templates}
    assert all(isinstance(i, bytes) and i for i in images)
    params = {**FAST, "finetune": ("world:downstream", "world:labelled/count"), "ft_steps": 6}
    artifact = run_score(Store(tmp_path / "s"), Pool(micro_world / "pool"), DfnScorer(**params), progress=False)
    assert {"ft_first_loss", "ft_val_loss"} <= set(artifact.manifest["fit_stats"])
    with pytest.raises(PluginError, match="needs labelled sets"):
        run_score(Store(tmp_path / "t"), Pool(micro_world / "pool"), DfnScorer(**{**FAST, "ft_steps": 3}),
                  progress=False)


@pytest.mark.parametrize("layout", ["wrapped", "plain", "ddp"])
def test_a_users_checkpoint_skips_training(micro_world, tmp_path, layout):
    """open_clip checkpoints as they are published: ``{"state_dict": ...}`` (open_clip_train), a bare state
    dict (converted releases such as apple/DFN-public), and DDP's ``module.`` prefix."""
    state = torch.load(micro_world / "models" / "micro.pt", weights_only=True)["state_dict"]
    saved = {"wrapped": {"state_dict": state}, "plain": state,
             "ddp": {"state_dict": {f"module.{k}": v for k, v in state.items()}}}[layout]
    torch.save(saved, tmp_path / "dfn.pt")
    scorer = DfnScorer(model="filterbench-micro-vit", init=str(tmp_path / "dfn.pt"), steps=0)
    artifact = run_score(Store(tmp_path / "s"), Pool(micro_world / "pool"), scorer, progress=False)
    network = json.loads((artifact.path / "fit" / "network.json").read_text())
    assert not network["trained"] and network["weights"] == str(tmp_path / "dfn.pt")
    assert not (artifact.path / "fit" / "model.pt").exists()
    assert artifact.manifest["fit"]["cost"]["cpu_s"] < 5  # nothing trained
    # the score is the cosine of the untouched model's embeddings
    reference = run_score(Store(tmp_path / "r"), Pool(micro_world / "pool"), DfnScorer(steps=0), progress=False)
    np.testing.assert_allclose(_score(artifact), _score(reference), atol=1e-6)


def test_a_users_checkpoint_edited_after_the_fit_is_refused(micro_world, tmp_path):
    """The fit only records a user's checkpoint (path, sha256): scoring with it again after it changed on disk
    must fail naming the file, not score other weights under the same fit key."""
    state = torch.load(micro_world / "models" / "micro.pt", weights_only=True)["state_dict"]
    torch.save({"state_dict": state}, tmp_path / "dfn.pt")
    params = {"model": "filterbench-micro-vit", "init": str(tmp_path / "dfn.pt"), "steps": 0}
    store, pool = Store(tmp_path / "s"), Pool(micro_world / "pool")
    first = run_score(store, pool, DfnScorer(**params), progress=False)
    torch.save({"state_dict": {k: v + 1 for k, v in state.items()}}, tmp_path / "dfn.pt")
    with pytest.raises(PluginError, match=r"dfn\.pt: the checkpoint changed since the dfn fit recorded"):
        run_score(store, pool, DfnScorer(**params, batch_size=16), progress=False)  # same fit, a new score
    assert run_score(store, pool, DfnScorer(**params), progress=False).path == first.path  # done: reused


def test_bad_checkpoint_and_data_errors_are_one_line(micro_world, tmp_path):
    from filterbench.harness.assets import AssetError

    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(AssetError, match="junk.pt: cannot load"):
        run_score(Store(tmp_path / "a"), Pool(micro_world / "pool"),
                  DfnScorer(model="filterbench-micro-vit", init=str(tmp_path / "junk.pt"), steps=0), progress=False)
    with pytest.raises(AssetError, match="not in the pool layout"):
        run_score(Store(tmp_path / "b"), Pool(micro_world / "pool"), DfnScorer(**{**FAST, "hq": "world:downstream"}),
                  progress=False)
