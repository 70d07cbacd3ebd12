"""Writing pools in the exact DataComp layout, byte-for-byte reproducibly.

Used by the nano world generator and by the test fixture that fabricates small pools.  Every file is written
to a temporary name and renamed into place, so an interrupted build never leaves a half-written shard that
looks complete.  Zip (npz) and tar members get fixed timestamps so that the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_parquet(path: str | Path, columns: Mapping[str, Sequence]) -> None:
    """Write a metadata parquet (columns in the given order), atomically."""
    path = Path(path)
    tmp = _atomic_target(path)
    pq.write_table(pa.table(dict(columns)), tmp, compression="snappy")
    os.replace(tmp, path)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], compress: bool = True) -> None:
    """Write an ``.npz`` like ``np.savez_compressed`` but with fixed member timestamps (reproducible bytes)."""
    path = Path(path)
    tmp = _atomic_target(path)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            archive.writestr(info, buffer.getvalue())
    os.replace(tmp, path)


def write_image_tar(path: str | Path, samples: Sequence[Mapping[str, object]]) -> None:
    """Write a webdataset tar shard in img2dataset's layout, through webdataset's own ``TarWriter``.

    Each sample is a mapping with ``__key__`` and members such as ``jpg`` (bytes), ``txt`` (str) and ``json``
    (dict).  Members are written in sorted extension order with mtime 0 so the bytes are reproducible.
    """
    import webdataset as wds

    path = Path(path)
    tmp = _atomic_target(path)
    with open(tmp, "wb") as stream:
        with wds.TarWriter(stream, mtime=0.0) as writer:
            for sample in samples:
                encoded = {"__key__": sample["__key__"]}
                for ext, value in sample.items():
                    if ext == "__key__":
                        continue
                    if isinstance(value, dict):
                        value = json.dumps(value, sort_keys=True).encode("utf-8")
                    elif isinstance(value, str):
                        value = value.encode("utf-8")
                    encoded[ext] = value  # bytes are written as-is (no re-encoding of images)
                writer.write(encoded)
    os.replace(tmp, path)


def write_tar_stats(path: str | Path, count: int, successes: int) -> None:
    """img2dataset's ``<shard>_stats.json`` (DataComp's resharder reads ``successes``)."""
    path = Path(path)
    tmp = _atomic_target(path)
    stats = {"count": count, "successes": successes, "failed_to_download": count - successes,
             "failed_to_resize": 0, "status_dict": {"success": successes}}
    tmp.write_text(json.dumps(stats, sort_keys=True, indent=1))
    os.replace(tmp, path)
