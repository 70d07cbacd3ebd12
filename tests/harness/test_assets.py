"""Named inputs of learned scorers (world assets and paths) and random access to raw samples by row."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from filterbench.harness.assets import (
    AssetError,
    ModelRef,
    load_model,
    resolve_labelled,
    resolve_model,
    resolve_pairs,
    world_root,
)
from filterbench.harness.errors import PoolError
from filterbench.harness.pool import Pool
from filterbench.harness.samples import LabelledSamples, PoolSamples
from filterbench.testing import fabricate_labelled_set, fabricate_pool


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder shaped like a built world: manifest with a models table, a pool, aux sets, a checkpoint."""
    import open_clip
    import torch

    from filterbench.harness.assets import register_model_configs

    root = tmp_path_factory.mktemp("world")
    fabricate_pool(root / "pool", rows=80, shards=1, seed=3)
    fabricate_pool(root / "aux" / "hq", rows=20, shards=1, seed=4)
    fabricate_labelled_set(root / "aux" / "downstream", rows=12)
    register_model_configs()
    torch.manual_seed(5)
    model = open_clip.create_model("filterbench-micro-vit")
    (root / "models").mkdir()
    torch.save({"state_dict": model.state_dict()}, root / "models" / "micro.pt")
    manifest = {"models": {"b32": {"name": "filterbench-micro-vit", "file": "models/micro.pt"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_world_assets_resolve_beside_the_pool(world):
    assert world_root(world / "pool") == world.resolve()
    ref = resolve_model("world:b32", None, world / "pool")
    assert ref == ModelRef("filterbench-micro-vit", world.resolve() / "models/micro.pt", "world:b32")
    assert resolve_model("filterbench-micro-vit", "world:b32", world / "pool").checkpoint == ref.checkpoint
    assert resolve_model("filterbench-micro-vit", None).checkpoint is None
    labelled = resolve_labelled("world:downstream", world / "pool")
    assert labelled.classnames == ("cat", "dog", "car") and "a {c}." in labelled.templates
    assert len(labelled.tars) == 1 and labelled.tars[0].parent.name == "train"
    assert resolve_pairs("world:hq", world / "pool") == world.resolve() / "aux" / "hq"
    assert resolve_labelled(str(world / "aux" / "downstream")).root == world / "aux" / "downstream"


def test_asset_errors_are_one_line_and_name_what_is_missing(world, tiny_pool, tmp_path):
    with pytest.raises(AssetError, match="not inside a world"):
        resolve_model("world:b32", None, tiny_pool)
    with pytest.raises(AssetError, match=r"no model 'l14' \(it has \['b32'\]\)"):
        resolve_model("world:l14", None, world / "pool")
    with pytest.raises(AssetError, match="no such file"):
        resolve_model("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(AssetError, match="no folder"):
        resolve_labelled("world:imagenet", world / "pool")
    with pytest.raises(AssetError, match="not in the pool layout"):
        resolve_pairs("world:downstream", world / "pool")
    (tmp_path / "set" / "train").mkdir(parents=True)
    (tmp_path / "set" / "classnames.txt").write_text("a\nb\n")
    (tmp_path / "set" / "zeroshot_classification_templates.txt").write_text("a photo\n")
    with pytest.raises(AssetError, match="template without"):
        resolve_labelled(str(tmp_path / "set"))


def test_load_model_reads_the_checkpoint_and_rejects_unknown_architectures(world):
    import torch

    model, train_pre, eval_pre, tokenizer = load_model(resolve_model("world:b32", None, world / "pool"))
    saved = torch.load(world / "models" / "micro.pt", weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert tokenizer(["a cat"]).shape[0] == 1 and callable(train_pre) and callable(eval_pre)
    with pytest.raises(AssetError, match="no-such-arch"):
        load_model(ModelRef("no-such-arch", None, "no-such-arch"))


def test_plugins_register_model_config_folders():
    from filterbench.harness.manager import Plugins
    from filterbench.harness.nano.refmodels import MODEL_CONFIG_DIR

    plugins = Plugins()
    assert MODEL_CONFIG_DIR.resolve() in plugins.model_config_dirs()
    assert plugins.model_config_owners()["nano_world"] == [str(MODEL_CONFIG_DIR.resolve())]


def _tar_members(pool_root):
    out = {}
    for path in sorted((pool_root / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[:-5]
                out[json.loads(data)["uid"]] = (members[key + ".jpg"], members[key + ".txt"].decode())
    return out


def test_pool_samples_read_the_exact_bytes_by_row_and_refuse_missing_images(tmp_path):
    root = fabricate_pool(tmp_path / "pool", rows=120, shards=2, seed=2, missing_images=0.2)
    pool, truth = Pool(root), _tar_members(root)
    samples = PoolSamples(pool)
    hexes = np.concatenate([pool.read_metadata(s)["uid"] for s in pool.shards])
    assert samples.available.tolist() == [u in truth for u in hexes]
    rows = np.flatnonzero(samples.available)[[5, 0, 40, 5]]
    images, texts = samples.read(rows)
    assert [(i, t) for i, t in zip(images, texts)] == [truth[hexes[r]] for r in rows]
    missing = int(np.flatnonzero(~samples.available)[0])
    with pytest.raises(PoolError, match=f"pool row {missing} has no image"):
        samples.read(np.array([missing]))


def test_labelled_samples_give_labels_and_decodable_images(tmp_path):
    from PIL import Image

    folder = fabricate_labelled_set(tmp_path / "set", rows=30, classes=("a", "b"))
    samples = LabelledSamples(sorted((folder / "train").glob("*.tar")))
    assert len(samples) == 30 and set(samples.labels.tolist()) <= {0, 1}
    image = Image.open(io.BytesIO(samples.read(np.array([7]))[0]))
    assert image.size == (16, 16)
