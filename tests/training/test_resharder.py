"""The resharder: valid webdataset shards copied verbatim, missing images counted, parallel and resumable."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from filterbench.harness.store import Store
from filterbench.harness.training import resharder
from filterbench.harness.training.plan import build_plan, feed_budget
from filterbench.harness.uids import pairs_to_hex
from filterbench.testing import fabricate_pool


@pytest.fixture(scope="module")
def lossy_pool(tmp_path_factory):
    """300 uids over 3 tars, about 10% of them without an image (failed downloads)."""
    return fabricate_pool(tmp_path_factory.mktemp("lossy") / "pool", rows=300, shards=1, rows_per_tar=100,
                          missing_images=0.1, seed=5)


def reshard(store: Store, pool_dir, counts, mode="multiset", workers=1, label="r"):
    from filterbench.harness.pool import Pool

    pool_uids = Pool(pool_dir).all_uids()
    building = store.build("train", label, "0" * 16, {"test": label})
    with building:
        tars = resharder.index_pool(building, pool_dir / "shards", workers)
        table = resharder.load_table(building, tars, pool_uids)
        plan = build_plan(mode, counts, table.available(), feed_budget(600, 5, 24, 1), np.random.default_rng(0))
        units = resharder.plan_units(plan, shard_size=50)
        layout = resharder.write_shards(building, table, pool_uids, plan, units, workers)
    return building, plan, layout, pool_uids


def read_tar(path):
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]


def test_shards_are_webdataset_with_uid_keys_and_missing_uids_reported(lossy_pool, tmp_path):
    import webdataset as wds

    counts = np.full(300, 2)
    building, plan, layout, pool_uids = reshard(Store(tmp_path), lossy_pool, counts)
    assert plan.stats["missing_uids"] > 0 and plan.stats["padded"] == plan.stats["missing_samples"]
    assert [s["samples"] for s in layout["segments"]] == [120] * 5
    seg = building.dir / "data" / "seg000"
    assert json.loads((seg / "sizes.json").read_text()) == {s["name"]: s["samples"]
                                                            for s in layout["segments"][0]["shards"]}
    pattern = resharder.shard_pattern(building.dir / "data", layout, 0)
    samples = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))
    assert len(samples) == 120
    expected_uids = pairs_to_hex(pool_uids[plan.segments[0]])
    for sample, uid in zip(samples, expected_uids):
        meta = json.loads(sample["json"])
        assert meta["uid"] == uid and sample["__key__"].rsplit("-", 1)[0] == uid
        assert "jpg" in sample and sample["txt"].decode() == meta["caption"]


def test_files_are_copied_verbatim(lossy_pool, tmp_path):
    building, *_ = reshard(Store(tmp_path), lossy_pool, np.full(300, 2))
    originals = {}
    for tar_path in sorted((lossy_pool / "shards").glob("*.tar")):
        members = dict(read_tar(tar_path))
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[:-5]
                originals[json.loads(data)["uid"]] = members[key + ".jpg"]
    name, data = next((n, d) for n, d in read_tar(building.dir / "data/seg002/00000001.tar") if n.endswith(".jpg"))
    assert data == originals[name.split("-")[0]]


def test_parallel_and_resumed_writes_give_identical_bytes(lossy_pool, tmp_path):
    counts = np.random.default_rng(1).multinomial(600, np.full(300, 1 / 300))
    one, *_ = reshard(Store(tmp_path / "one"), lossy_pool, counts, workers=1)
    two, *_ = reshard(Store(tmp_path / "two"), lossy_pool, counts, workers=2)
    shards = sorted(p.relative_to(one.dir) for p in (one.dir / "data").rglob("*.tar"))
    assert len(shards) == 15
    for rel in shards:
        assert (one.dir / rel).read_bytes() == (two.dir / rel).read_bytes()
    # lose one shard and rerun: only that unit is written again, with the same bytes
    victim = one.dir / shards[4]
    before = {rel: (one.dir / rel).stat().st_mtime_ns for rel in shards}
    victim.unlink()
    reshard(Store(tmp_path / "one"), lossy_pool, counts, workers=1)
    assert victim.read_bytes() == (two.dir / shards[4]).read_bytes()
    changed = [rel for rel in shards if (one.dir / rel).stat().st_mtime_ns != before[rel]]
    assert changed == [shards[4]]


def test_an_unreadable_pool_tar_is_skipped_not_fatal(tmp_path):
    pool = fabricate_pool(tmp_path / "pool", rows=200, shards=1, rows_per_tar=100, seed=2)
    (pool / "shards" / "00000001.tar").write_bytes(b"this is not a tar file" * 100)
    _, plan, layout, _ = reshard(Store(tmp_path / "s"), pool, np.full(200, 3))
    assert plan.stats["missing_uids"] == 100 and plan.stats["missing_samples"] == 300
    assert sum(s["samples"] for s in layout["segments"]) == 600


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_scanner_agrees_with_tarfile(tmp_path, fmt):
    import io

    from filterbench.harness.training import tarformat

    path = tmp_path / "t.tar"
    long_name = "d" * 60 + "/" + "k" * 70 + ".json" if fmt != tarfile.USTAR_FORMAT else "short/k.json"
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in (("a.jpg", b"\xff" * 700), (long_name, b"{}"), ("empty.txt", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    with tarfile.open(path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
    with open(path, "rb") as handle:
        assert list(tarformat.scan(handle)) == expected
    written = tarformat.member("x-0.txt", b"hello") + tarformat.END_OF_ARCHIVE
    with tarfile.open(fileobj=io.BytesIO(written)) as tar:
        assert [(m.name, tar.extractfile(m).read(), m.mtime, m.mode) for m in tar] == [("x-0.txt", b"hello", 0, 0o644)]
