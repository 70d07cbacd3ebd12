"""Rebuilding a world with the same seed gives byte-identical files (on a micro world, to keep tests fast)."""

from pathlib import Path

from filterbench.harness.nano.world import ref_specs

MICRO = {"pool_size": 1024, "pool_parquets": 2, "rows_per_tar": 400, "ref_pool": 600, "refs": ref_specs(256, 256, 128),
         "eval_size": 40, "retrieval_size": 20, "hq_size": 100, "downstream_size": 60, "labelled_size": 30}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_rebuilds_byte_identical_files(tmp_path, capfd):
    from filterbench.harness.nano import build_world

    first = build_world("xs", out=tmp_path / "a", **MICRO)
    second = build_world("xs", out=tmp_path / "b", **MICRO)
    # the reference models are created from scratch on purpose: open_clip's warning about it is not printed
    # (by the build or by its worker processes, which write to the same file descriptors)
    assert "No pretrained weights loaded" not in capfd.readouterr().err
    a, b = _files(first.root), _files(second.root)
    assert a.keys() == b.keys() and len(a) > 50
    different = [name for name in a if a[name] != b[name]]
    assert not different, different
    assert first.key == second.key
    for expected in ("pool/shards/00000000.tar", "models/nano-ref-l14.pt", "manifest.json",
                     "evalsets/wds_nano-objects_test/test/0.tar", "aux/hq/shards/00000000.tar"):
        assert expected in a
