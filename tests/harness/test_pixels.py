"""The pixel path (harness/pixels.py): scorers that embed the pool's images and captions with their own model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from filterbench.harness.errors import PluginError, PoolError
from filterbench.harness.manager import Plugins
from filterbench.harness.pixels import Encoder, PixelParams, PixelScorer
from filterbench.harness.pool import Pool
from filterbench.harness.stages.score import run_score
from filterbench.harness.store import Store
from filterbench.testing import check_scorer, fabricate_pool

ARCH = "filterbench-micro-vit"
DIMS = 4


class EmbeddingScorer(PixelScorer):
    """Test plugin: the first DIMS coordinates of each image and text embedding of a fixed micro model."""

    name = "test_embedding"
    outputs = tuple(f"img{i}" for i in range(DIMS)) + tuple(f"txt{i}" for i in range(DIMS))

    class Params(PixelParams):
        checkpoint: str = ""

    def load_encoder(self, ctx, device, precision):
        model, preprocess, tokenizer = _micro(self.params.checkpoint)
        return Encoder(model.to(device), preprocess, tokenizer, device, precision)

    def score_embeddings(self, image, text):
        return {**{f"img{i}": image[:, i] for i in range(DIMS)}, **{f"txt{i}": text[:, i] for i in range(DIMS)}}


def _micro(checkpoint: str):
    from filterbench.harness.assets import ModelRef, load_model

    model, _, preprocess, tokenizer = load_model(ModelRef(ARCH, Path(checkpoint), "test"))
    return model.eval(), preprocess, tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _micro_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.pt")


def _micro_checkpoint(path: Path) -> Path:
    """A fixed micro model's weights (seed 11), also used by the executor tests."""
    import open_clip
    import torch

    from filterbench.harness.assets import register_model_configs

    register_model_configs()
    torch.manual_seed(11)
    torch.save({"state_dict": open_clip.create_model(ARCH).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def plugins():
    return plugins_with(EmbeddingScorer)


def _scores(artifact) -> dict[str, np.ndarray]:
    tables = [pq.read_table(artifact.path / "parts" / f"{stem}.parquet") for stem in artifact.manifest["parts"]]
    return {name: np.concatenate([t.column(name).to_numpy() for t in tables]) for name in tables[0].column_names}


def _tar_images(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted((root / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in members.items():
            if name.endswith(".json"):
                out[json.loads(data)["uid"]] = members[name[:-5] + ".jpg"]
    return out


def test_pixel_path_gives_the_embeddings_of_calling_the_model_directly(tmp_path, checkpoint, plugins):
    import torch
    from PIL import Image

    root = fabricate_pool(tmp_path / "pool", rows=90, shards=2, rows_per_tar=20, missing_images=0.15, seed=5)
    scorer = EmbeddingScorer(checkpoint=str(checkpoint), batch_size=16, decode_workers=2)
    artifact = run_score(Store(tmp_path / "store"), Pool(root), scorer, plugins=plugins, progress=False)
    got = _scores(artifact)
    images = _tar_images(root)
    texts = np.concatenate([pq.read_table(p, columns=["text"]).column("text").to_numpy()
                            for p in sorted((root / "metadata").glob("*.parquet"))])
    has = np.array([u in images for u in got["uid"]])
    assert 0 < has.sum() < len(has)
    model, preprocess, tokenizer = _micro(str(checkpoint))
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(images[u])).convert("RGB")) for u in got["uid"][has]])
    with torch.no_grad():  # one batch of everything, not the scorer's batches of 16
        image, text = model.encode_image(pixels).numpy(), model.encode_text(tokenizer(list(texts[has]))).numpy()
    for i in range(DIMS):
        np.testing.assert_allclose(got[f"img{i}"][has], image[:, i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[f"txt{i}"][has], text[:, i], rtol=1e-4, atol=1e-5)
        assert np.isnan(got[f"img{i}"][~has]).all() and np.isnan(got[f"txt{i}"][~has]).all()
    manifest = artifact.manifest
    assert manifest["throughput"]["images"] == has.sum()
    assert manifest["throughput"]["missing_images"] == (~has).sum() == manifest["stats"]["img0"]["nan"]
    assert manifest["throughput"]["images_per_s"] > 0 and manifest["unit_stats"]["model_s"] > 0
    assert manifest["unit_stats"]["unit_cpu_s"] > 0


def test_pixel_scorer_conforms_and_worker_and_thread_counts_do_not_change_bytes(tmp_path, checkpoint, plugins):
    pool = fabricate_pool(tmp_path / "pool", rows=70, shards=3, rows_per_tar=25, missing_images=0.1, seed=6)
    one = check_scorer(EmbeddingScorer(checkpoint=str(checkpoint), batch_size=8), tmp_path / "a", pool, plugins)
    threads = run_score(Store(tmp_path / "b"), Pool(pool), EmbeddingScorer(checkpoint=str(checkpoint), batch_size=8,
                        decode_workers=3), plugins=plugins, progress=False)
    assert threads.key == one.key  # decode_workers is not part of the key
    for stem in one.manifest["parts"]:
        assert (one.path / "parts" / f"{stem}.parquet").read_bytes() == \
            (threads.path / "parts" / f"{stem}.parquet").read_bytes()


def test_a_missing_image_is_reported_never_scored(tmp_path, checkpoint, plugins):
    root = fabricate_pool(tmp_path / "pool", rows=30, shards=1, seed=7)
    scorer = EmbeddingScorer(checkpoint=str(checkpoint), batch_size=4)
    batch = Pool(root).batches(scorer.needs, Pool(root).shards[0])
    from filterbench.harness.contract import StageContext

    batch.images.available[[3, 17]] = False  # as if those two downloads had failed
    out = scorer.score_batch(batch, ctx := StageContext(rng=np.random.default_rng(0)))
    for column in scorer.outputs:
        assert np.isnan(out[column][[3, 17]]).all()
        assert np.isfinite(np.delete(out[column], [3, 17])).all()
    assert ctx.stats["missing_images"] == 2 and ctx.stats["images"] == 28


def test_lazy_images_decode_on_access_and_slice_lazily(tmp_path):
    root = fabricate_pool(tmp_path / "pool", rows=25, shards=1, rows_per_tar=10, missing_images=0.2, seed=8)
    pool = Pool(root)
    from filterbench.harness.contract import Needs

    images = pool.batches(Needs(images=True), pool.shards[0]).images
    truth = _tar_images(root)
    uids = pool.read_metadata(pool.shards[0])["uid"]
    assert images.available.tolist() == [u in truth for u in uids]
    part = images[5:15]
    assert len(part) == 10 and part.available.tolist() == images.available[5:15].tolist()
    for i, img in enumerate(part):
        assert (img is None) == (uids[5 + i] not in truth)
        if img is not None:
            assert img.size == (16, 16) and img.mode == "RGB"
    present = int(np.flatnonzero(images.available)[0])
    assert images.encoded([present]) == [truth[uids[present]]]


def test_an_undecodable_image_is_a_one_line_error_naming_tar_uid_and_shard(tmp_path, checkpoint, plugins):
    from filterbench.harness.poolwrite import write_image_tar

    root = fabricate_pool(tmp_path / "pool", rows=12, shards=1, rows_per_tar=12, seed=9)
    tar = root / "shards" / "00000000.tar"
    with tarfile.open(tar) as handle:
        members = {m.name: handle.extractfile(m).read() for m in handle if m.isfile()}
    keys = sorted({name.split(".")[0] for name in members})
    samples = [{"__key__": k, "jpg": members[f"{k}.jpg"], "txt": members[f"{k}.txt"].decode(),
                "json": json.loads(members[f"{k}.json"])} for k in keys]
    samples[4]["jpg"] = b"not a jpeg"
    write_image_tar(tar, samples)
    bad_uid = samples[4]["json"]["uid"]
    with pytest.raises(PoolError, match=rf"00000000\.tar: uid {bad_uid} \(metadata shard \w+\): undecodable"):
        run_score(Store(tmp_path / "store"), Pool(root), EmbeddingScorer(checkpoint=str(checkpoint)),
                  plugins=plugins, progress=False)


def test_a_pool_without_tars_is_an_error_naming_the_folder(tmp_path, checkpoint, plugins):
    root = fabricate_pool(tmp_path / "pool", rows=10, shards=1, images=False, seed=2)
    with pytest.raises(PoolError, match="shards: no tar shards"):
        run_score(Store(tmp_path / "store"), Pool(root), EmbeddingScorer(checkpoint=str(checkpoint)),
                  plugins=plugins, progress=False)


def test_cuda_when_absent_is_a_plugin_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from filterbench.harness.pixels import resolve_device

    with pytest.raises(PluginError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from harness.test_pixels import EmbeddingScorer, plugins_with
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.store import Store

    class Dying(EmbeddingScorer):
        def score_batch(self, batch, ctx):
            if batch.shard == os.environ.get("DIE_ON_SHARD"):
                os.kill(os.getpid(), signal.SIGKILL)
            return super().score_batch(batch, ctx)

    Dying.name = "test_embedding"
    run_score(Store(sys.argv[1]), Pool(sys.argv[2]), Dying(checkpoint=sys.argv[3], batch_size=8),
              plugins=plugins_with(Dying), progress=False)
""")


def plugins_with(cls):
    """A plugin manager holding only ``cls`` (used by the killed-run script)."""
    import types

    from filterbench.harness.hookspecs import hookimpl

    module = types.ModuleType("test_pixel_plugins")
    module.register_scorers = hookimpl(lambda register: register(cls))
    return Plugins(load_entry_points=False, extra=(("test_pixel_plugins", module),))


def test_killed_score_run_resumes_with_identical_bytes(tmp_path, checkpoint, plugins):
    root = fabricate_pool(tmp_path / "pool", rows=60, shards=3, rows_per_tar=15, missing_images=0.1, seed=4)
    stems = [s.stem for s in Pool(root).shards]
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(tests=str(Path(__file__).resolve().parents[1])))
    store = tmp_path / "killed"
    env = {**os.environ, "DIE_ON_SHARD": stems[1], "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, str(script), str(store), str(root), str(checkpoint)], env=env)
    assert killed.returncode == -9
    partial = [p for p in (store / "scores").iterdir()]
    assert len(partial) == 1 and not (partial[0] / "_COMPLETE").exists()
    assert (partial[0] / "units" / f"{stems[0]}.json").is_file()  # the first shard finished before the kill
    first = (partial[0] / "parts" / f"{stems[0]}.parquet").stat().st_mtime_ns
    env.pop("DIE_ON_SHARD")
    subprocess.run([sys.executable, str(script), str(store), str(root), str(checkpoint)], env=env, check=True)
    resumed = Store(store).iter_artifacts("scores")
    resumed = next(iter(resumed))
    assert (resumed.path / "parts" / f"{stems[0]}.parquet").stat().st_mtime_ns == first  # not recomputed
    fresh = run_score(Store(tmp_path / "fresh"), Pool(root), EmbeddingScorer(checkpoint=str(checkpoint), batch_size=8),
                      plugins=plugins, progress=False)
    assert resumed.key == fresh.key
    for stem in stems:
        assert (resumed.path / "parts" / f"{stem}.parquet").read_bytes() == \
            (fresh.path / "parts" / f"{stem}.parquet").read_bytes()
