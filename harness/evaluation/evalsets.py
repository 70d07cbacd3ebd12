"""Local eval sets in DataComp's webdataset layout: writers, readers and presence checks.

Layout of one eval set (what clip_benchmark's ``build_dataset("wds/...")`` reads)::

    <root>/wds_<task>_test/
        classnames.txt                          # classification: one class per line, line i = label i
        zeroshot_classification_templates.txt   # classification: one template per line, with {c}
        dataset_type.txt                        # "retrieval" or "winogavil"; absent = classification
        test/nshards.txt                        # N
        test/0.tar ... test/{N-1}.tar           # samples s0000000, s0000001, ... in order

Sample files: the image as ``.webp`` (lossless; ``.png``/``.jpg`` kept as given when passed as bytes), the
label as ``.cls``, optional per-sample metadata as ``.npy`` (WILDS and fairness sets), captions as ``.txt``
(retrieval, one caption per line), and for WinoGAViL ``.json`` (cue, associations) with candidate images
``.img0.webp``, ``.img1.webp``...  (``dataset_type.txt`` = ``winogavil`` is our own extension.)
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from filterbench.harness.errors import FilterbenchError

DEFAULT_SHARD_SIZE = 10_000  # DataComp's sets hold <= 10,000 samples per shard
IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")  # the order clip_benchmark tries
_PIL_EXT = {"WEBP": "webp", "PNG": "png", "JPEG": "jpg"}


class EvalsetError(FilterbenchError):
    """An eval set folder is missing files, malformed, or cannot be written."""


# ---------------------------------------------------------------- encoding


def encode_image(image: Any) -> tuple[str, bytes]:
    """(extension, bytes) for a PIL image, an HxWx3 uint8 array, or already-encoded bytes.

    Arrays and PIL images become lossless WebP (webdataset has no webp encoder, so we write bytes).
    Encoded bytes are kept as they are, under the extension of the format PIL detects in them.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        try:
            fmt = Image.open(io.BytesIO(data)).format
        except Exception as exc:  # PIL raises several types for undecodable data
            raise EvalsetError(f"image bytes are not a readable image ({exc})") from None
        if fmt not in _PIL_EXT:
            return "webp", _to_webp(Image.open(io.BytesIO(data)))
        return _PIL_EXT[fmt], data
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise EvalsetError(f"unsupported image type {type(image).__name__}")
    return "webp", _to_webp(image)


def _to_webp(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def _one_line(text: str) -> str:
    # classnames/templates/captions are line-based files: an embedded newline would shift every label
    return " ".join(str(text).splitlines()).strip()


# ---------------------------------------------------------------- writing


def _write_shards(folder: Path, samples: Iterable[dict[str, Any]], shard_size: int) -> int:
    """Write samples into ``folder/test/{i}.tar``; returns the number of shards."""
    import webdataset as wds

    test = folder / "test"
    test.mkdir(parents=True, exist_ok=True)
    count = 0
    # mtime fixed so that the same inputs give byte-identical tars (eval sets are content-hashed)
    with wds.ShardWriter(str(test / "%d.tar"), maxcount=shard_size, verbose=0, mtime=0) as sink:
        for index, sample in enumerate(samples):
            sink.write({"__key__": f"s{index:07d}", **sample})
            count += 1
    if count == 0:
        raise EvalsetError(f"{folder}: no samples to write")
    nshards = len(list(test.glob("*.tar")))
    (test / "nshards.txt").write_text(f"{nshards}\n")
    return nshards


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(_one_line(line) + "\n" for line in lines), encoding="utf-8")


class _AtomicFolder:
    """Build an eval set in a temporary sibling folder and rename it into place when complete.

    A crash never leaves a half-written set under the final name, so presence checks stay honest.
    """

    def __init__(self, folder: str | Path, overwrite: bool):
        self.folder = Path(folder)
        if self.folder.exists() and not overwrite:
            raise EvalsetError(f"{self.folder} already exists (pass overwrite=True to replace it)")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=self.folder.name + ".tmp-", dir=self.folder.parent))

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.tmp.rename(self.folder)


def write_classification_evalset(
    folder: str | Path,
    images: Iterable[Any],
    labels: Iterable[int],
    classnames: Sequence[str],
    templates: Sequence[str],
    shard_size: int = DEFAULT_SHARD_SIZE,
    metadata: Iterable[np.ndarray] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a zero-shot classification eval set in DataComp's layout.

    Args:
        folder: the set's folder, normally ``<root>/<task.folder>`` (e.g. ``wds_vtab-cifar100_test``).
        images: PIL images, HxWx3 uint8 arrays, or encoded image bytes.
        labels: integer labels, indices into ``classnames``.
        classnames: class names in label order.
        templates: prompt templates containing ``{c}``.
        shard_size: samples per tar.
        metadata: optional per-sample 1-D integer arrays, stored as ``.npy`` (WILDS / fairness group codes).
        overwrite: replace an existing folder.

    Returns:
        The folder.
    """
    if not classnames or not templates:
        raise EvalsetError(f"{folder}: classnames and templates must be non-empty")
    bad = [t for t in templates if "{c}" not in t]
    if bad:
        raise EvalsetError(f"{folder}: template {bad[0]!r} has no {{c}} placeholder")

    def samples() -> Iterator[dict[str, Any]]:
        rows = (
            zip(images, labels, metadata, strict=True)
            if metadata is not None
            else ((image, label, None) for image, label in zip(images, labels, strict=True))
        )
        for image, label, meta in rows:
            label = int(label)
            if not 0 <= label < len(classnames):
                raise EvalsetError(f"{folder}: label {label} outside 0..{len(classnames) - 1}")
            ext, data = encode_image(image)
            sample = {ext: data, "cls": label}
            if meta is not None:
                sample["npy"] = np.asarray(meta)
            yield sample

    with _AtomicFolder(folder, overwrite) as tmp:
        _write_lines(tmp / "classnames.txt", classnames)
        _write_lines(tmp / "zeroshot_classification_templates.txt", templates)
        _write_shards(tmp, samples(), shard_size)
    return Path(folder)


def write_retrieval_evalset(
    folder: str | Path,
    images: Iterable[Any],
    captions: Iterable[Sequence[str]],
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
) -> Path:
    """Write an image-text retrieval eval set: ``dataset_type.txt`` = retrieval, captions in ``.txt``.

    Each image comes with a list of one or more captions (Flickr and MSCOCO have five).
    """

    def samples() -> Iterator[dict[str, Any]]:
        for image, caps in zip(images, captions, strict=True):
            caps = [_one_line(c) for c in ([caps] if isinstance(caps, str) else caps)]
            if not caps or not all(caps):
                raise EvalsetError(f"{folder}: every image needs at least one non-empty caption")
            ext, data = encode_image(image)
            yield {ext: data, "txt": "\n".join(caps)}

    with _AtomicFolder(folder, overwrite) as tmp:
        (tmp / "dataset_type.txt").write_text("retrieval\n")
        _write_shards(tmp, samples(), shard_size)
    return Path(folder)


def write_winogavil_evalset(
    folder: str | Path,
    examples: Iterable[dict[str, Any]],
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
) -> Path:
    """Write a WinoGAViL-style association set.

    Each example is ``{"cue": str, "images": [candidate images], "associations": [indices of the
    candidates associated with the cue]}``.
    """

    def samples() -> Iterator[dict[str, Any]]:
        for example in examples:
            candidates = list(example["images"])
            assoc = sorted(int(i) for i in example["associations"])
            if not assoc or assoc[0] < 0 or assoc[-1] >= len(candidates):
                raise EvalsetError(
                    f"{folder}: associations {assoc} do not index {len(candidates)} candidates"
                )
            sample: dict[str, Any] = {"json": {"cue": str(example["cue"]), "associations": assoc}}
            for i, image in enumerate(candidates):
                ext, data = encode_image(image)
                sample[f"img{i}.{ext}"] = data
            yield sample

    with _AtomicFolder(folder, overwrite) as tmp:
        (tmp / "dataset_type.txt").write_text("winogavil\n")
        _write_shards(tmp, samples(), shard_size)
    return Path(folder)


# ---------------------------------------------------------------- reading


def dataset_type(folder: str | Path) -> str:
    """``classification`` unless ``dataset_type.txt`` says otherwise (clip_benchmark's rule)."""
    path = Path(folder) / "dataset_type.txt"
    return path.read_text().strip().lower() if path.is_file() else "classification"


def shard_paths(folder: str | Path) -> list[Path]:
    """The tars named by ``test/nshards.txt``; raises :class:`EvalsetError` naming what is missing."""
    folder = Path(folder)
    nshards_file = folder / "test" / "nshards.txt"
    try:
        nshards = int(nshards_file.read_text().strip())
    except (OSError, ValueError):
        raise EvalsetError(f"{nshards_file}: missing or not an integer") from None
    paths = [folder / "test" / f"{i}.tar" for i in range(nshards)]
    missing = [p.name for p in paths if not p.is_file()]
    if nshards < 1 or missing:
        raise EvalsetError(f"{folder}: shard files missing: {missing or 'nshards < 1'}")
    return paths


def evalset_problem(folder: str | Path, evaluator: str = "zeroshot_classification") -> str | None:
    """None when the folder looks complete for this evaluator, else a short reason."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        shard_paths(folder)
    except EvalsetError as exc:
        return str(exc)
    if evaluator not in ("zeroshot_retrieval", "winogavil"):
        for name in ("classnames.txt", "zeroshot_classification_templates.txt"):
            if not (folder / name).is_file():
                return f"{name} missing"
    return None


def iter_samples(folder: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for every sample, in shard then file order (the order of evaluation)."""
    for path in shard_paths(folder):
        current, files = None, {}
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                if key != current and files:
                    yield current, files
                    files = {}
                current = key
                files[ext] = tar.extractfile(member).read()
        if files:
            yield current, files


def count_samples(folder: str | Path) -> int:
    """Number of samples, counted from tar headers."""
    total = 0
    for path in shard_paths(folder):
        with tarfile.open(path) as tar:
            total += len({m.name.rsplit("/", 1)[-1].partition(".")[0] for m in tar if m.isfile()})
    return total


def read_labels_and_metadata(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``.cls`` labels and stacked ``.npy`` metadata, in evaluation order (for WILDS / fairness metrics)."""
    labels, metadata = [], []
    for key, files in iter_samples(folder):
        if "npy" not in files:
            raise EvalsetError(f"{folder}: sample {key} has no .npy metadata")
        if "cls" in files:
            labels.append(int(files["cls"].decode().strip()))
        metadata.append(load_npy(files["npy"]))
    return np.asarray(labels, dtype=np.int64), np.stack(metadata)


def load_npy(data: bytes) -> np.ndarray:
    """A sample's ``.npy`` payload as a flat array (pickles refused: eval data is untrusted input)."""
    return np.load(io.BytesIO(data), allow_pickle=False).reshape(-1)


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]


def decode_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def first_image(files: dict[str, bytes]) -> bytes | None:
    for ext in IMAGE_EXTS:
        if ext in files:
            return files[ext]
    return None


def read_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))
