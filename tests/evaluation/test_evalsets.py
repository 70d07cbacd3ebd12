"""Eval-set writers (checked with clip_benchmark's own loader), Let It Wag! conversion, CLI, download."""

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from filterbench.harness.cli.eval_cmds import eval_summarize, evalsets
from filterbench.harness.errors import FilterbenchError
from filterbench.harness.evaluation import evalsets as ev
from filterbench.harness.evaluation.download import DownloadError, download_evalsets
from filterbench.harness.evaluation.letitwag import convert_letitwag

RNG = np.random.default_rng(3)


def _images(n, size=8):
    return [RNG.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _build(name, folder, **kw):
    from clip_benchmark.datasets.builder import build_dataset

    return build_dataset(name, root=str(folder), transform=None, split="test", download=False, **kw)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_classification_layout_loads_with_clip_benchmark(tmp_path):
    folder = tmp_path / "wds_vtab-cifar100_test"
    images = _images(25)
    ev.write_classification_evalset(
        folder,
        images,
        [i % 3 for i in range(25)],
        ["cat", "dog", "ant"],
        ["a photo of a {c}.", "a {c}"],
        shard_size=10,
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "classnames.txt",
        "test",
        "zeroshot_classification_templates.txt",
    ]
    assert (folder / "test" / "nshards.txt").read_text().strip() == "3"
    assert sorted(p.name for p in (folder / "test").glob("*.tar")) == ["0.tar", "1.tar", "2.tar"]
    with tarfile.open(folder / "test" / "0.tar") as tar:
        assert {m.name for m in tar}.issuperset({"s0000000.webp", "s0000000.cls"})
    ds = _build("wds/vtab/cifar100", folder)
    assert ds.classes == ["cat", "dog", "ant"] and ds.templates == ["a photo of a {c}.", "a {c}"]
    samples = list(ds)
    assert [label for _, label in samples] == [i % 3 for i in range(25)]
    assert np.array_equal(np.asarray(samples[7][0]), images[7])  # lossless webp


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_retrieval_layout_loads_with_clip_benchmark(tmp_path):
    folder = tmp_path / "wds_retrieval-x_test"
    captions = [[f"caption {i}", f"second\nline {i}"] for i in range(6)]
    ev.write_retrieval_evalset(folder, _images(6), captions, shard_size=4)
    assert (folder / "dataset_type.txt").read_text().strip() == "retrieval"
    ds = _build("wds/retrieval/x", folder, task="zeroshot_retrieval")
    got = [caps for _, caps in ds]
    assert got[5] == ["caption 5", "second line 5"]  # embedded newlines cannot split a caption
    assert ev.count_samples(folder) == 6


def test_metadata_and_encoded_bytes(tmp_path):
    folder = tmp_path / "wds_wilds-fmow_test"
    png = io.BytesIO()
    Image.fromarray(_images(1)[0]).save(png, format="PNG")
    meta = [np.array([i % 6, 2000 + i, i % 2]) for i in range(5)]
    ev.write_classification_evalset(
        folder, [png.getvalue()] * 5, [0, 1, 0, 1, 1], ["a", "b"], ["{c}"], metadata=meta
    )
    labels, metadata = ev.read_labels_and_metadata(folder)
    assert labels.tolist() == [0, 1, 0, 1, 1] and np.array_equal(metadata, np.stack(meta))
    key, files = next(ev.iter_samples(folder))
    assert key == "s0000000" and "png" in files  # encoded bytes are kept as given


def test_writer_errors_and_atomicity(tmp_path):
    with pytest.raises(FilterbenchError, match="no {c} placeholder"):
        ev.write_classification_evalset(tmp_path / "a", _images(1), [0], ["x"], ["a photo"])
    with pytest.raises(FilterbenchError, match="label 5 outside"):
        ev.write_classification_evalset(tmp_path / "b", _images(1), [5], ["x"], ["{c}"])
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob("b.tmp-*"))
    ev.write_classification_evalset(tmp_path / "c", _images(1), [0], ["x"], ["{c}"])
    with pytest.raises(FilterbenchError, match="already exists"):
        ev.write_classification_evalset(tmp_path / "c", _images(1), [0], ["x"], ["{c}"])
    assert ev.evalset_problem(tmp_path / "c") is None
    (tmp_path / "c" / "test" / "0.tar").unlink()
    assert "shard files missing" in ev.evalset_problem(tmp_path / "c")
    assert ev.evalset_problem(tmp_path / "nope") == "missing"


def _parquet(path, labels, hf_names=None):
    blobs = []
    for image in _images(len(labels)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG")
        blobs.append({"bytes": buffer.getvalue(), "path": None})
    table = pa.table({"image": blobs, "label": labels})
    if hf_names is not None:  # what `datasets` stores for a ClassLabel column
        features = {"image": {"_type": "Image"}, "label": {"names": hf_names, "_type": "ClassLabel"}}
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, path)
    return path


def test_letitwag_from_classlabel_parquet(tmp_path):
    files = [
        _parquet(tmp_path / "a.parquet", [0, 2, 1], ["axolotl", "quokka", "okapi"]),
        _parquet(tmp_path / "b.parquet", [2, 2], ["axolotl", "quokka", "okapi"]),
    ]
    folder = convert_letitwag(files, tmp_path / "evalsets", shard_size=2)
    assert folder.name == "wds_letitwag_test"
    assert ev.read_lines(folder / "classnames.txt") == ["axolotl", "quokka", "okapi"]
    templates = ev.read_lines(folder / "zeroshot_classification_templates.txt")
    assert len(templates) == 80 and all("{c}" in t for t in templates)
    labels = [int(files["cls"]) for _, files in ev.iter_samples(folder)]
    assert labels == [0, 2, 1, 2, 2]
    assert all("jpg" in files for _, files in ev.iter_samples(folder))


def test_letitwag_string_labels_and_errors(tmp_path):
    path = _parquet(tmp_path / "s.parquet", ["zebu", "aye-aye", "zebu"])
    folder = convert_letitwag([path], tmp_path / "out")
    assert ev.read_lines(folder / "classnames.txt") == ["aye-aye", "zebu"]
    with pytest.raises(FilterbenchError, match="no column 'picture'"):
        convert_letitwag([path], tmp_path / "out2", image_column="picture")
    ints = _parquet(tmp_path / "i.parquet", [0, 1])
    with pytest.raises(FilterbenchError, match="pass classnames"):
        convert_letitwag([ints], tmp_path / "out3")


def test_cli_add_letitwag_ls_and_summarize(tmp_path):
    path = _parquet(tmp_path / "lw.parquet", [1, 0], ["a", "b"])
    runner = CliRunner()
    result = runner.invoke(evalsets, ["add-letitwag", "--parquet", str(path), "--to", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(evalsets, ["ls", str(tmp_path / "ev"), "--json"])
    listing = {row["key"]: row for row in json.loads(result.output)["tasks"]}
    assert listing["letitwag"]["status"] == "present" and listing["letitwag"]["kind"] == "extra"
    assert listing["imagenet1k"]["status"] == "missing" and len(listing) == 41
    assert "1/41 present" in runner.invoke(evalsets, ["ls", str(tmp_path / "ev")]).output
    results = tmp_path / "r.jsonl"
    results.write_text(
        json.dumps(
            {"key": "imagenet1k", "dataset": "ImageNet 1k", "metrics": {"acc1": 0.5, "main_metric": 0.5}}
        )
        + "\n"
    )
    summary = json.loads(runner.invoke(eval_summarize, [str(results)]).output)
    assert summary["scores"]["ImageNet"] == 0.5 and len(summary["missing_tasks"]) == 37
    bad = runner.invoke(eval_summarize, [str(results), "--tasklist", "nope"])
    assert bad.exit_code == 2 and bad.output.startswith("error: unknown task list 'nope'")


def test_download_offline_fails_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline") as info:
        download_evalsets(tmp_path, "datacomp_v1", tasks=["cifar10"])
    assert "\n" not in str(info.value)
    result = CliRunner().invoke(evalsets, ["download", "--to", str(tmp_path), "--task", "cifar10"])
    assert result.exit_code == 2 and result.output.startswith("error: offline")
