"""Helpers for plugin authors' tests (ours and third parties'): a fabricated DataComp-format pool and
conformance checks.  Importable as ``filterbench.testing``.

    from filterbench.testing import check_scorer, check_sampler, fabricate_pool

    def test_my_scorer(tmp_path):
        check_scorer(MyScorer(), tmp_path)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from filterbench.harness.contract import Budget, Sampler, Scorer, ScoreTable

_WORDS = ("a", "photo", "of", "the", "red", "blue", "green", "small", "large", "dog", "cat", "car", "tree",
          "house", "on", "beach", "in", "snow", "with", "two", "bird", "flower", "city", "night")


def fabricate_pool(root: str | Path, rows: int = 600, shards: int = 2, seed: int = 0,
                   feature_sets: dict[str, int] | None = None, images: bool = True, rows_per_tar: int = 250,
                   missing_images: float = 0.0, texts: Sequence[str] | None = None,
                   sizes: Sequence[tuple[int, int]] | None = None) -> Path:
    """Write a small pool in DataComp's exact layout and return its folder.

    Metadata parquets are named by 32-hex stems with uid, text, url, original_width/height, sha256 and a
    ``clip_<set>_similarity_score`` column per feature set; npz sidecars hold unit-norm fp16 ``<set>_img`` /
    ``<set>_txt`` arrays (image/text pairs with varying alignment, so scores spread over [-1, 1]); tar shards
    follow img2dataset (``NNNNNNNN.tar`` with 12-digit keys, ``.jpg/.txt/.json``, plus ``_stats.json``).
    """
    from filterbench.harness.poolwrite import write_image_tar, write_npz, write_parquet, write_tar_stats

    root = Path(root)
    rng = np.random.default_rng(seed)
    feature_sets = feature_sets or {"b32": 16, "l14": 24}
    texts = list(texts) if texts is not None else [
        " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 8)))) for _ in range(rows)]
    sizes = list(sizes) if sizes is not None else [
        (int(rng.integers(64, 1200)), int(rng.integers(64, 1200))) for _ in range(rows)]
    uid_bytes = rng.bytes(16 * rows)
    uids = [uid_bytes[16 * i:16 * i + 16].hex() for i in range(rows)]
    features = {name: _pair_features(rng, rows, dim) for name, dim in feature_sets.items()}
    bounds = np.linspace(0, rows, shards + 1).astype(int)
    tar_id = 0
    for s in range(shards):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        stem = rng.bytes(16).hex()
        columns: dict[str, Any] = {
            "uid": uids[lo:hi], "url": [f"https://example.invalid/{u}.jpg" for u in uids[lo:hi]],
            "text": texts[lo:hi], "original_width": [w for w, _ in sizes[lo:hi]],
            "original_height": [h for _, h in sizes[lo:hi]],
            "sha256": [_sha(u) for u in uids[lo:hi]]}
        sidecar = {}
        for name, (img, txt) in features.items():
            img16, txt16 = img[lo:hi].astype(np.float16), txt[lo:hi].astype(np.float16)
            sidecar[f"{name}_img"], sidecar[f"{name}_txt"] = img16, txt16
            columns[f"clip_{name}_similarity_score"] = _cosine64(img16, txt16).astype(np.float32)
        write_parquet(root / "metadata" / f"{stem}.parquet", columns)
        write_npz(root / "metadata" / f"{stem}.npz", sidecar)
        if images:
            tar_id = _write_tars(root, rng, uids[lo:hi], texts[lo:hi], sizes[lo:hi], tar_id, rows_per_tar,
                                 missing_images, write_image_tar, write_tar_stats)
    return root


def _pair_features(rng: np.random.Generator, rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    shared = rng.standard_normal((rows, dim))
    alignment = rng.uniform(0.0, 1.0, size=(rows, 1))
    img = shared + 0.5 * rng.standard_normal((rows, dim))
    txt = alignment * shared + (1 - alignment) * rng.standard_normal((rows, dim))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return unit(img), unit(txt)


def _cosine64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _sha(uid: str) -> str:
    import hashlib

    return hashlib.sha256(uid.encode()).hexdigest()


def _write_tars(root, rng, uids, texts, sizes, tar_id, rows_per_tar, missing, write_tar, write_stats) -> int:
    from PIL import Image

    for start in range(0, len(uids), rows_per_tar):
        samples = []
        chunk = range(start, min(len(uids), start + rows_per_tar))
        for row in chunk:
            if missing and rng.random() < missing:
                continue  # a failed download: in the parquet, not in the tar
            pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            key = f"{tar_id:08d}{row - start:04d}"
            w, h = sizes[row]
            samples.append({"__key__": key, "jpg": buffer.getvalue(), "txt": texts[row],
                            "json": {"uid": uids[row], "key": key, "caption": texts[row], "status": "success",
                                     "original_width": w, "original_height": h, "width": 16, "height": 16}})
        write_tar(root / "shards" / f"{tar_id:08d}.tar", samples)
        write_stats(root / "shards" / f"{tar_id:08d}_stats.json", len(chunk), len(samples))
        tar_id += 1
    return tar_id


def fabricate_labelled_set(folder: str | Path, rows: int = 60, classes: Sequence[str] = ("cat", "dog", "car"),
                           seed: int = 0, split: str = "train", size: int = 16) -> Path:
    """Write a small labelled set in DataComp's eval layout (``classnames.txt``, templates, ``<split>/*.tar``
    of ``.webp`` + ``.cls``), the layout of ImageNet-train for FLYT or a downstream training set.  Images are
    random noise tinted by class, so a model can tell the classes apart."""
    from filterbench.harness.evaluation.evalsets import write_classification_evalset

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(classes), size=rows)
    tints = rng.integers(0, 256, size=(len(classes), 3))
    images = [np.clip(tints[c] + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
              for c in labels]
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".staging")
    write_classification_evalset(staging, images, labels.tolist(), list(classes),
                                 ["a photo of a {c}.", "a {c}.", "an image of a {c}."], overwrite=True)
    (staging / "test").rename(staging / split)
    staging.rename(folder)
    return folder


# -- conformance checks ------------------------------------------------------------------------------------------
def check_scorer(scorer: Scorer, workdir: str | Path, pool: str | Path | None = None, plugins: Any = None) -> Any:
    """Run ``scorer`` through the real score stage and check what every scorer must guarantee.

    Checks: declared columns only, float32, finite, one row per pool uid, byte-identical parts whether run
    with 1 or 2 workers, and for batch-dependent scorers a different output under another seed.  Returns the
    score artifact of the 1-worker run.
    """
    from filterbench.harness.pool import Pool
    from filterbench.harness.stages.score import run_score
    from filterbench.harness.store import Store

    workdir = Path(workdir)
    pool_dir = Path(pool) if pool is not None else fabricate_pool(workdir / "pool", images=scorer.needs.images)
    runs = {}
    for workers in (1, 2):
        store = Store(workdir / f"store-w{workers}")
        runs[workers] = run_score(store, Pool(pool_dir), scorer, seed=0, workers=workers, plugins=plugins,
                                  progress=False)
    one, two = runs[1], runs[2]
    assert one.key == two.key, "the worker count must not enter the key"
    manifest = one.manifest
    assert manifest["columns"] == list(scorer.output_columns()), manifest["columns"]
    assert manifest["rows"] == Pool(pool_dir).size
    for stem in manifest["parts"]:
        a = (one.path / "parts" / f"{stem}.parquet").read_bytes()
        b = (two.path / "parts" / f"{stem}.parquet").read_bytes()
        assert a == b, f"scorer {scorer.name!r}: shard {stem} differs between 1 and 2 workers"
        _check_part(one.path / "parts" / f"{stem}.parquet", scorer)
    if scorer.batch_dependent:
        other = run_score(Store(workdir / "store-seed1"), Pool(pool_dir), scorer, seed=1, workers=1,
                          plugins=plugins, progress=False)
        stem = manifest["parts"][0]
        assert (other.path / "parts" / f"{stem}.parquet").read_bytes() != \
            (one.path / "parts" / f"{stem}.parquet").read_bytes(), "batch-dependent scorer ignores its seed"
    return one


def _check_part(path: Path, scorer: Scorer) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.column_names == ["uid", *scorer.output_columns()], table.column_names
    for column in scorer.output_columns():
        values = table.column(column).to_numpy()
        assert values.dtype == np.float32
        if not scorer.needs.images:
            assert np.isfinite(values).all(), f"{path}: non-finite {column}"


def check_sampler(sampler: Sampler, pool_size: int = 500, samples_seen: int | None = None, segments: int = 5,
                  columns: Sequence[str] | None = None, seed: int = 0) -> np.ndarray:
    """Call ``sampler`` on random scores and check its mode's invariants and determinism.

    Returns the counts of the first call.
    """
    from filterbench.harness.uids import UID_DTYPE

    rng = np.random.default_rng(seed)
    names = list(columns) if columns is not None else (list(sampler.score_columns()) or ["score"])
    table = ScoreTable({n: rng.standard_normal(pool_size).astype(np.float32) for n in names},
                       uids=np.sort(np.frombuffer(rng.bytes(16 * pool_size), dtype=UID_DTYPE)))
    budget = Budget(samples_seen or pool_size, segments, pool_size)
    first = sampler(table, budget, np.random.default_rng(seed))
    again = sampler(table, budget, np.random.default_rng(seed))
    assert first.tobytes() == again.tobytes(), f"sampler {sampler.name!r} is not deterministic for a seed"
    assert first.dtype == np.uint32
    return first


def artifact_bytes(artifact) -> dict[str, bytes]:
    """Every output file of an artifact (score parts, fitted state, selection files) by name: two artifacts
    made by different executors or worker counts must compare equal."""
    return {name: (artifact.path / name).read_bytes() for name in sorted(artifact.manifest["outputs"])}


def one_task_tasklist(name: str, title: str = "Colours") -> str:
    """The YAML of a task list with a single zero-shot classification task ``<name>/<title lowercased>``, in a
    group of its own: what a test of the chain needs to evaluate one small eval set."""
    task = f"{name}/{title.lower()}"
    return (f"format: filterbench-tasklist/1\nname: {name}\nversion: 1\ntasks:\n  {task}: {{name: {title}}}\n"
            f"groups:\n  {title}: [{task}]\naverage: {{name: Average, expected_tasks: 1}}\n")
