import shutil

import numpy as np
import pytest

from filterbench.harness.contract import Needs
from filterbench.harness.errors import PoolError
from filterbench.harness.pool import Pool
from filterbench.harness.poolcheck import check_pool
from filterbench.harness.poolwrite import write_npz, write_parquet
from filterbench.testing import fabricate_pool


def _copy(tiny_pool, tmp_path):
    return Pool(shutil.copytree(tiny_pool, tmp_path / "pool"))


def test_reads_only_declared_inputs(tiny_pool):
    pool = Pool(tiny_pool)
    assert pool.size == 600 and len(pool.shards) == 2
    batch = pool.batches(Needs(metadata=("text",), features=("l14_img",)), pool.shards[1])
    assert set(batch.metadata) == {"text"} and set(batch.features) == {"l14_img"}
    assert batch.features["l14_img"].dtype == np.float32 and len(batch) == pool.shards[1].rows
    assert batch.images is None


def test_images_come_from_the_tars_by_uid(tmp_path):
    root = fabricate_pool(tmp_path / "p", rows=40, shards=1, rows_per_tar=15, missing_images=0.3, seed=3)
    pool = Pool(root)
    batch = pool.batches(Needs(images=True), pool.shards[0])
    present = [img is not None for img in batch.images]
    assert 0 < sum(present) < 40  # failed downloads have no image
    assert check_pool(pool, deep=True)["images"] == sum(present)


def test_deep_check_passes_and_key_is_stable(tiny_pool):
    report = check_pool(Pool(tiny_pool), deep=True)
    assert report == {"rows": 600, "shards": 2, "images": 600}
    assert Pool(tiny_pool).key() == Pool(tiny_pool).key()


def test_npz_row_count_mismatch_names_both_files(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    shard = pool.shards[0]
    with np.load(shard.npz) as npz:
        arrays = {k: npz[k][:-1] for k in npz.files}
    write_npz(shard.npz, arrays)
    with pytest.raises(PoolError, match=rf"{shard.stem}\.npz: array 'b32_img' has shape .* {shard.stem}\.parquet"):
        check_pool(Pool(pool.root))


def test_duplicate_uid_names_both_places(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    first = pool.read_metadata(pool.shards[0], ("text",))
    second = pool.read_metadata(pool.shards[1], ("text",))
    second["uid"][5] = first["uid"][3]
    write_parquet(pool.shards[1].parquet, second)
    with pytest.raises(PoolError, match=rf"duplicate uid {first['uid'][3]} at .*row 3 and .*row 5"):
        check_pool(Pool(pool.root))


def test_non_hex_uid_names_file_and_row(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    meta = pool.read_metadata(pool.shards[0], ("text",))
    meta["uid"][7] = "z" * 32
    write_parquet(pool.shards[0].parquet, meta)
    with pytest.raises(PoolError, match=rf"{pool.shards[0].stem}\.parquet: row 7: uid 'z+' is not hexadecimal"):
        check_pool(Pool(pool.root))


def test_missing_sidecar_and_truncated_files(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    pool.shards[1].npz.unlink()
    with pytest.raises(PoolError, match=rf"{pool.shards[1].stem}\.npz: missing npz sidecar"):
        check_pool(Pool(pool.root), needs=Needs(features=("l14_img",)))
    data = pool.shards[0].npz.read_bytes()
    pool.shards[0].npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(PoolError, match=rf"{pool.shards[0].stem}\.npz: unreadable or truncated npz"):
        Pool(pool.root).read_features(pool.shards[0], ("l14_img",))
    parquet = pool.shards[0].parquet.read_bytes()
    pool.shards[0].parquet.write_bytes(parquet[:100])
    with pytest.raises(PoolError, match=rf"{pool.shards[0].stem}\.parquet: unreadable parquet"):
        Pool(pool.root)


def test_pool_key_changes_with_metadata(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    before = pool.key()
    meta = pool.read_metadata(pool.shards[0], ("text",))
    meta["text"][0] = "changed caption"
    write_parquet(pool.shards[0].parquet, meta)
    assert Pool(pool.root).key() != before


def test_not_a_pool(tmp_path):
    with pytest.raises(PoolError, match="not a pool folder"):
        Pool(tmp_path)


def test_pool_key_changes_when_features_are_recomputed_in_place(tiny_pool, tmp_path):
    # An uncompressed npz (np.savez, as DataComp's are) keeps its byte size when features are recomputed with the
    # same shapes; the key must still change, or stale scores would be reused.
    pool = _copy(tiny_pool, tmp_path)
    npz = pool.shards[0].npz
    with np.load(npz) as data:
        arrays = {name: data[name] for name in data.files}
    np.savez(npz, **arrays)
    before, size = Pool(pool.root).key(), npz.stat().st_size
    arrays["l14_img"] = arrays["l14_img"][::-1].copy()
    np.savez(npz, **arrays)
    assert npz.stat().st_size == size
    assert Pool(pool.root).key() != before


def test_unreadable_npz_is_named_in_the_key_error(tiny_pool, tmp_path):
    pool = _copy(tiny_pool, tmp_path)
    pool.shards[1].npz.write_bytes(b"not a zip")
    with pytest.raises(PoolError, match=rf"{pool.shards[1].stem}\.npz: unreadable or truncated npz sidecar"):
        Pool(pool.root).key()


def _member_boundaries(tar_path):
    import tarfile

    with tarfile.open(tar_path) as tar:
        return [member.offset for member in tar]


def test_deep_check_refuses_a_tar_truncated_on_a_member_boundary(tiny_pool, tmp_path):
    """Issue 19.5: a tar cut on a 512-byte boundary read as a shorter valid archive; deep check said nothing."""
    from click.testing import CliRunner

    from filterbench.harness.cli import cli

    pool = _copy(tiny_pool, tmp_path)
    tar = sorted(pool.shards_dir.glob("*.tar"))[0]
    cut = _member_boundaries(tar)[-9]  # before the last samples' headers: a multiple of 512
    assert cut % 512 == 0
    tar.write_bytes(tar.read_bytes()[:cut])
    with pytest.raises(PoolError, match=rf"{tar.name}: truncated tar \(no end-of-archive marker"):
        check_pool(Pool(pool.root), deep=True)
    result = CliRunner().invoke(cli, ["pool", "check", str(pool.root), "--deep"])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith(f"error: {tar}: truncated")


def test_deep_check_compares_each_tar_with_its_stats_and_the_metadata(tiny_pool, tmp_path):
    import io
    import json
    import tarfile

    pool = _copy(tiny_pool, tmp_path)
    first, second = sorted(pool.shards_dir.glob("*.tar"))[:2]
    stats = first.with_name(f"{first.stem}_stats.json")
    original = stats.read_text()
    stats.write_text(json.dumps({**json.loads(original), "successes": 7}))
    with pytest.raises(PoolError, match=rf"{first.name}: \d+ samples in the tar but {first.stem}_stats.json "
                                        r"reports 7 successes"):
        check_pool(Pool(pool.root), deep=True)
    stats.write_text(original)
    with tarfile.open(second) as tar:  # a whole, well-formed tar that holds a uid of no metadata parquet
        members = [(m, tar.extractfile(m).read()) for m in tar]
    foreign = "f" * 32
    with tarfile.open(second, "w") as tar:
        for member, data in members:
            if member.name.endswith(".json"):
                data = json.dumps({**json.loads(data), "uid": foreign}).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(PoolError, match=rf"{second.name}: uid {foreign} is in the tar but in no metadata parquet"):
        check_pool(Pool(pool.root), deep=True)
    second.unlink()
    second.with_name(f"{second.stem}_stats.json").unlink()
    with pytest.raises(PoolError, match=r"shards: the tars' _stats.json files count \d+ rows attempted but the "
                                        r"metadata has 600 rows"):
        check_pool(Pool(pool.root), deep=True)


def test_the_duplicate_search_in_bounded_ranges_finds_what_a_full_sort_finds(tiny_pool, tmp_path):
    from filterbench.harness.poolcheck import check_uids

    pool = _copy(tiny_pool, tmp_path)
    assert np.array_equal(check_uids(pool, max_rows=7), pool.all_uids())  # 86 ranges of high words, no duplicate
    first = pool.read_metadata(pool.shards[0], ("text",))
    second = pool.read_metadata(pool.shards[1], ("text",))
    second["uid"][9] = first["uid"][2]
    second["uid"][11] = first["uid"][2][:16] + second["uid"][11][16:]  # same high word, other low word
    write_parquet(pool.shards[1].parquet, second)
    for max_rows in (7, 1000):
        with pytest.raises(PoolError, match=rf"duplicate uid {first['uid'][2]} at .*row 2 and .*row 9"):
            check_uids(Pool(pool.root), max_rows=max_rows)


def test_registration_reads_npz_headers_not_arrays(tiny_pool, tmp_path, monkeypatch):
    from filterbench.harness.stages.pool import register_pool
    from filterbench.harness.store import Store

    pool = _copy(tiny_pool, tmp_path)
    monkeypatch.setattr(Pool, "read_features", lambda *a, **k: pytest.fail("registration read array data"))
    artifact = register_pool(Store(tmp_path / "work"), pool)
    assert np.array_equal(np.load(artifact.path / "uids.npy"), pool.all_uids())
