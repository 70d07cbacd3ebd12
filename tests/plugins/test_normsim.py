"""NormSim against brute force; target-set resolution (files, folders, DataComp .pt, pool-local, nano)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from filterbench.harness.errors import ParamsError, PluginError
from filterbench.harness.manager import Plugins
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.harness.targets import TargetError, parse_concepts, resolve_concepts, resolve_target
from filterbench.harness.testing import check_scorer, fabricate_pool
from filterbench.plugins.normsim import NormSimScorer

DIM = 12


def plugins() -> Plugins:
    return Plugins(load_entry_points=False, extra=(("normsim", "filterbench.plugins.normsim"),))


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return fabricate_pool(tmp_path_factory.mktemp("ns") / "pool", rows=120, shards=2, images=False,
                          feature_sets={"l14": DIM})


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pool_images(pool: Path) -> np.ndarray:
    p = Pool(pool)
    return np.concatenate([p.read_features(s, ("l14_img",))["l14_img"] for s in p.shards]).astype(np.float64)


def score(pool: Path, tmp: Path, **params) -> dict[str, np.ndarray]:
    artifact = run_score(Store(tmp / "store"), Pool(pool), NormSimScorer(**params), plugins=plugins(),
                         progress=False)
    tables = [pq.read_table(artifact.path / f"parts/{s}.parquet") for s in artifact.manifest["parts"]]
    return {c: np.concatenate([t.column(c).to_numpy() for t in tables]) for c in ("norm_inf", "norm_2")}


def test_equals_brute_force(pool, tmp_path):
    targets = np.random.default_rng(1).standard_normal((40, DIM)).astype(np.float32)
    np.save(tmp_path / "t.npy", targets)
    got = score(pool, tmp_path, target=str(tmp_path / "t.npy"))
    sims = unit(pool_images(pool)) @ unit(targets.astype(np.float64)).T
    np.testing.assert_allclose(got["norm_inf"], np.abs(sims).max(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["norm_2"], np.sqrt((sims ** 2).sum(1)), rtol=1e-5, atol=1e-6)


def test_absolute_value_lets_a_negative_cosine_win(pool, tmp_path):
    """A target opposite a pool image gives it NormSim_inf = 1 (|-1|), as the reference's p-norm does."""
    images = unit(pool_images(pool))
    targets = np.stack([-images[5], unit(np.ones((1, DIM)))[0]]).astype(np.float32)
    np.save(tmp_path / "t.npy", targets)
    got = score(pool, tmp_path, target=str(tmp_path / "t.npy"))
    assert got["norm_inf"][5] == pytest.approx(1.0, abs=1e-5)
    assert (got["norm_inf"] >= np.abs(images @ unit(targets.astype(np.float64)).T).max(1) - 1e-5).all()


def test_ivf_index_is_a_lower_bound_and_exact_with_every_list_probed(pool, tmp_path):
    targets = np.random.default_rng(2).standard_normal((200, DIM)).astype(np.float32)
    np.save(tmp_path / "t.npy", targets)
    exact = np.abs(unit(pool_images(pool)) @ unit(targets.astype(np.float64)).T).max(1)
    one = score(pool, tmp_path / "a", target=str(tmp_path / "t.npy"), index="IVF8,Flat", nprobe=1)
    assert (one["norm_inf"] <= exact + 1e-5).all()
    every = score(pool, tmp_path / "b", target=str(tmp_path / "t.npy"), index="IVF8,Flat", nprobe=8)
    np.testing.assert_allclose(every["norm_inf"], exact, rtol=1e-5, atol=1e-6)


def test_conformance_and_fit_record(pool, tmp_path):
    np.save(tmp_path / "t.npy", np.random.default_rng(3).standard_normal((10, DIM)).astype(np.float32))
    artifact = check_scorer(NormSimScorer(target=str(tmp_path / "t.npy")), tmp_path / "w", pool=pool,
                            plugins=plugins())
    assert (artifact.path / "fit/target.json").is_file()
    assert artifact.manifest["fit_stats"]["target_rows"] == 10


def test_pinned_digest_and_dimension_checks(pool, tmp_path):
    np.save(tmp_path / "t.npy", np.ones((3, DIM), dtype=np.float32))
    with pytest.raises(ParamsError, match="sha256"):
        score(pool, tmp_path / "a", target=str(tmp_path / "t.npy"), target_sha256="0" * 64)
    np.save(tmp_path / "wide.npy", np.ones((3, DIM + 1), dtype=np.float32))
    with pytest.raises(PluginError, match="dim"):
        score(pool, tmp_path / "b", target=str(tmp_path / "wide.npy"))


def test_pool_local_target_serves_the_imagenet_train_role(pool, tmp_path):
    """The default target resolves to the pool's own targets/imagenet_train.npz (how nano supplies it)."""
    targets = np.random.default_rng(4).standard_normal((25, DIM)).astype(np.float32)
    local = tmp_path / "pool"
    import shutil

    shutil.copytree(pool, local)
    (local / "targets").mkdir()
    np.savez(local / "targets/imagenet_train.npz", l14_img=targets, b32_img=np.zeros((25, 3), np.float32))
    got = score(local, tmp_path, target="imagenet_train")
    np.testing.assert_allclose(got["norm_inf"], np.abs(unit(pool_images(local)) @ unit(targets).T).max(1),
                               rtol=1e-5, atol=1e-6)


def test_target_formats(tmp_path, monkeypatch):
    a, b = np.ones((2, 4), np.float32), 2 * np.ones((3, 4), np.float32)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", l14_img=b, other=np.zeros((1, 9)))
    torch.save({"image_features": torch.from_numpy(b)}, tmp_path / "c.pt")
    torch.save(a, tmp_path / "d.pt")  # DataComp's centroid files: a torch-saved numpy array
    assert resolve_target(str(tmp_path / "b.npz"), feature="l14_img").embeddings.shape == (3, 4)
    assert resolve_target(str(tmp_path / "c.pt")).embeddings.shape == (3, 4)
    np.testing.assert_array_equal(resolve_target(str(tmp_path / "d.pt")).embeddings, a)
    folder = tmp_path / "dir"
    folder.mkdir()
    np.save(folder / "0.npy", a)
    np.save(folder / "1.npy", b)
    both = resolve_target(str(folder))
    assert both.embeddings.shape == (5, 4) and len(both.digest) == 64
    np.testing.assert_allclose(np.linalg.norm(both.normalized(), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(TargetError, match="registered"):
        resolve_target(str(tmp_path / "missing.npy"))
    monkeypatch.setenv("FILTERBENCH_DATACOMP_ASSETS", str(tmp_path))
    with pytest.raises(TargetError, match="in1k_clip_vit_l14_0.pt"):
        resolve_target("datacomp_in1k_l14")


def test_nano_hook(tmp_path, monkeypatch):
    """``nano:<size>`` asks the nano world for its downstream features and concepts."""
    from filterbench.harness import nano
    from filterbench.plugins import nano_world  # noqa: F401  (the provider registers the `nano` inputs)

    np.savez(tmp_path / "down.npz", l14_img=np.ones((4, 3), np.float32))
    (tmp_path / "concepts.txt").write_text("n02084071\nn02121620  cat\n")
    world = types.SimpleNamespace(downstream_features=tmp_path / "down.npz",
                                  concepts=tmp_path / "concepts.txt")
    monkeypatch.setattr(nano, "get_world", lambda size="xs": world, raising=False)
    assert resolve_target("nano:xs", feature="l14_img").embeddings.shape == (4, 3)
    concepts = resolve_concepts("nano:xs")
    assert concepts.kind == "wordnet" and concepts.offsets == {2084071, 2121620}
    assert parse_concepts("Dog\nhot dog\n").words == {"dog", "hot dog"}
