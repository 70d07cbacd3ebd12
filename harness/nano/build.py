"""Building a nano world: orchestration, content-addressed caching and the :class:`NanoWorld` handle.

A world lives in ``$FILTERBENCH_HOME/nano/<size>-<key>/`` (or a folder given with ``out``), where the key
hashes everything that determines its bytes: the size's config, :data:`world.WORLD_VERSION`, the source of
this package (code, model configs, task list) and the versions of the libraries that encode images and train
models.  A build happens in a ``.partial`` sibling folder and is renamed into place when complete, under an
exclusive lock, so concurrent callers wait for one build and never see half a world.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from filterbench.harness.errors import FilterbenchError
from filterbench.harness.hashing import content_key
from filterbench.harness.nano.world import WORLD_VERSION, NanoConfig, get_config

PACKAGE_DIR = Path(__file__).parent
COMPLETE = "_COMPLETE"
MANIFEST = "manifest.json"


class NanoError(FilterbenchError):
    """A nano world cannot be built where asked (e.g. the folder holds something else)."""


def source_digest() -> str:
    """SHA-256 over this package's files that shape a world (modules, model configs, task list)."""
    digest = hashlib.sha256()
    files = sorted(PACKAGE_DIR.glob("*.py")) + sorted(PACKAGE_DIR.glob("model_configs/*.json")) + sorted(
        PACKAGE_DIR.glob("tasklists/*.yaml"))
    for path in files:
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    """Versions of the libraries that encode images and train models (from package metadata: no imports)."""
    from importlib.metadata import version

    names = ("numpy", "open_clip_torch", "pillow", "pyarrow", "torch", "webdataset")
    return {name: version(name) for name in names}


def world_key(cfg: NanoConfig) -> str:
    """The cache key of the world ``cfg`` describes."""
    return content_key({"world_version": WORLD_VERSION, "config": cfg.as_dict(), "source": source_digest(),
                        "libraries": _library_versions()})


def default_root() -> Path:
    """``<work directory>/nano``: the artifact store's root (``$FILTERBENCH_HOME``, default ./filterbench-work)."""
    from filterbench.harness.store import default_workdir

    return default_workdir() / "nano"


def is_complete(folder: Path, key: str | None = None) -> bool:
    """Whether ``folder`` holds a finished world (with this key, when given)."""
    if not (folder / COMPLETE).is_file():
        return False
    if key is None:
        return True
    try:
        return json.loads((folder / MANIFEST).read_text())["key"] == key
    except (OSError, ValueError, KeyError):
        return False


@contextmanager
def _locked(folder: Path):
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_world(size: str = "xs", out: str | Path | None = None, seed: int = 0, force: bool = False,
                log: Callable[[str], None] | None = None, **overrides) -> Path:
    """Build (or find) the world of ``size`` and return its folder.

    Args:
        size: ``xs`` (tests, CI) or ``default`` (the benchmark).
        out: folder to build into; default ``$FILTERBENCH_HOME/nano/<size>-<key>``.
        seed: root seed of every random draw.
        force: rebuild even when a complete world with the same key is there.
        log: progress callback (one line per phase, with timings).
        overrides: NanoConfig fields to change (small test worlds); they enter the key.
    """
    from filterbench.harness.nano import pipeline

    cfg = get_config(size, seed=seed, **overrides)
    key = world_key(cfg)
    folder = Path(out) if out is not None else default_root() / f"{cfg.size}-{key}"
    with _locked(folder):
        if not force and is_complete(folder, key):
            return folder
        if folder.exists() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
            raise NanoError(f"{folder} exists and is not a nano world; refusing to overwrite it")
        partial = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        started = time.perf_counter()
        manifest = pipeline.run(partial, cfg, log or (lambda line: None))
        manifest.update({"key": key, "size": cfg.size, "seed": cfg.seed, "world_version": WORLD_VERSION})
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        (partial / COMPLETE).write_text("")
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        if log:
            log(f"nano world {cfg.size} built in {time.perf_counter() - started:.1f} s: {folder}")
    return folder
