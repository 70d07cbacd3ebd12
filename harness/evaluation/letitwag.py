"""Convert Let It Wag! (bethgelab/Let-It-Wag, a long-tail concept test set) to DataComp's eval-set layout.

The Hugging Face release is a set of parquet files written by ``datasets``: an ``image`` column (a struct
with ``bytes`` and ``path``, or plain binary) and a ``label`` column (a ``ClassLabel`` integer whose names sit
in the parquet schema's ``huggingface`` metadata).  Both column names are options because we could not
inspect the files offline.  Class names come, in order of preference, from ``classnames`` (a list or a
one-per-line file), from that ``ClassLabel`` metadata, or, for a string label column, from the sorted
distinct labels.

The result is an *extra* task of the task list (``letitwag`` in ``datacomp_v1``): evaluated when present and
reported beside the headline average, never inside it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Iterator, Sequence

from filterbench.harness.evaluation.evalsets import EvalsetError, write_classification_evalset
from filterbench.harness.evaluation.tasklist import TaskList, load_tasklist

LETITWAG_KEY = "letitwag"
DEFAULT_IMAGE_COLUMN = "image"
DEFAULT_LABEL_COLUMN = "label"
READ_BATCH_ROWS = 256  # rows per parquet read: images are large, keep memory flat


def openai_imagenet_templates() -> list[str]:
    """open_clip's 80 OpenAI ImageNet prompts as ``{c}`` strings (they ship as callables)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{c}") for template in OPENAI_IMAGENET_TEMPLATES]


def _open(paths: Sequence[str | Path], image_column: str, label_column: str) -> list:
    import pyarrow.parquet as pq

    files = []
    for path in paths:
        try:
            pf = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:
            raise EvalsetError(f"{path}: not a readable parquet file ({exc})") from None
        names = pf.schema_arrow.names
        for column in (image_column, label_column):
            if column not in names:
                raise EvalsetError(f"{path}: no column {column!r} (columns: {', '.join(names)})")
        files.append(pf)
    if not files:
        raise EvalsetError("no parquet files given")
    return files


def _classlabel_names(pf, label_column: str) -> list[str] | None:
    """Names of a ``datasets`` ClassLabel column, from the parquet schema metadata, if present."""
    meta = pf.schema_arrow.metadata or {}
    try:
        features = json.loads(meta[b"huggingface"])["info"]["features"]
        names = features[label_column].get("names")
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return list(names) if names else None


def _label_is_string(pf, label_column: str) -> bool:
    import pyarrow as pa

    kind = pf.schema_arrow.field(label_column).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _resolve_classnames(
    files: list, label_column: str, classnames: Sequence[str] | str | Path | None
) -> list[str]:
    if isinstance(classnames, (str, Path)):
        classnames = [line.strip() for line in Path(classnames).read_text().splitlines() if line.strip()]
    if classnames:
        return list(classnames)
    if _label_is_string(files[0], label_column):
        labels: set[str] = set()
        for pf in files:
            labels.update(str(v) for v in pf.read(columns=[label_column]).column(0).to_pylist())
        return sorted(labels)
    names = _classlabel_names(files[0], label_column)
    if names is None:
        raise EvalsetError(
            f"column {label_column!r} holds integers and the parquet metadata has no "
            "ClassLabel names; pass classnames"
        )
    return names


def _rows(
    files: list, image_column: str, label_column: str, classnames: list[str]
) -> Iterator[tuple[bytes, int]]:
    index = {name: i for i, name in enumerate(classnames)}
    for pf in files:
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=[image_column, label_column]):
            images = batch.column(image_column).to_pylist()
            labels = batch.column(label_column).to_pylist()
            for image, label in zip(images, labels, strict=True):
                yield _image_bytes(image, image_column), _label_index(label, index, len(classnames))


def _image_bytes(value, column: str) -> bytes:
    if isinstance(value, dict):  # datasets' Image feature: {"bytes": ..., "path": ...}
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)):
        raise EvalsetError(
            f"column {column!r}: expected image bytes (or a struct with `bytes`), got {type(value).__name__}"
        )
    return bytes(value)


def _label_index(label, index: dict[str, int], n_classes: int) -> int:
    if isinstance(label, str):
        if label not in index:
            raise EvalsetError(f"label {label!r} is not among the class names")
        return index[label]
    if label is None or not 0 <= int(label) < n_classes:
        raise EvalsetError(f"label {label!r} outside 0..{n_classes - 1}")
    return int(label)


def convert_letitwag(
    parquet_files: Sequence[str | Path],
    to_dir: str | Path,
    image_column: str = DEFAULT_IMAGE_COLUMN,
    label_column: str = DEFAULT_LABEL_COLUMN,
    classnames: Sequence[str] | str | Path | None = None,
    templates: Sequence[str] | str | Path | None = None,
    shard_size: int = 10_000,
    overwrite: bool = False,
    tasklist: TaskList | str = "datacomp_v1",
) -> Path:
    """Write Let It Wag! as ``<to_dir>/wds_letitwag_test`` (the ``letitwag`` extra of the task list).

    Args:
        parquet_files: the release's parquet files (all rows are used, in file order).
        to_dir: the eval-set root (the folder passed to the evaluator as ``evalsets_dir``).
        image_column: column with image bytes (struct with ``bytes`` or binary).
        label_column: column with an integer class index or a class-name string.
        classnames: class names in label order (list or file); see the module docstring for defaults.
        templates: prompt templates with ``{c}`` (list or file); default: the 80 OpenAI ImageNet prompts.
        shard_size: samples per tar.
        overwrite: replace an existing folder.
        tasklist: the task list whose ``letitwag`` extra names the folder.

    Returns:
        The written folder.
    """
    task = load_tasklist(tasklist).task(LETITWAG_KEY)
    files = _open(parquet_files, image_column, label_column)
    names = _resolve_classnames(files, label_column, classnames)
    if isinstance(templates, (str, Path)):
        templates = [line.strip() for line in Path(templates).read_text().splitlines() if line.strip()]
    rows_for_images, rows_for_labels = itertools.tee(_rows(files, image_column, label_column, names))
    return write_classification_evalset(
        Path(to_dir) / task.folder,
        (image for image, _ in rows_for_images),
        (label for _, label in rows_for_labels),
        names,
        list(templates) if templates else openai_imagenet_templates(),
        shard_size=shard_size,
        overwrite=overwrite,
    )
