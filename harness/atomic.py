"""Atomic file writes: a temporary name in the same folder, fsync, rename.

Every temporary file the harness writes is named ``.<name>.tmp-<pid>`` (:func:`temporary_path`), so a
temporary left behind by a killed process is recognisable (:func:`is_temporary`) and the store removes it
before a folder completes instead of carrying it into the finished artifact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from filterbench.harness import faults

_TEMPORARY = re.compile(r"\.tmp-\d+")


def temporary_path(path: str | Path) -> Path:
    """Where to write ``path`` before renaming it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of the harness's temporaries (``.x.tmp-123``, ``x.tmp-123.npy``)."""
    return _TEMPORARY.search(name) is not None


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename a fully written temporary into place (a fault point on each side of the rename)."""
    faults.point(f"written {Path(path).name}")
    os.replace(tmp, path)
    faults.point(f"renamed {Path(path).name}")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``: readers see the old file or the new one, never half of it."""
    path = Path(path)
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    publish(tmp, path)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """JSON (indented, sorted keys, UTF-8) written atomically."""
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (best effort: some file systems refuse directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
