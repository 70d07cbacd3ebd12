"""The artifact store: content-addressed, resumable stage folders with JSON ID cards (manifests).

Layout under the work directory (``--workdir`` or ``$FILTERBENCH_HOME``, default ``./filterbench-work``)::

    pools/<label>-<key>/        manifest.json, uids.npy, _COMPLETE
    fits/<scorer>-<key>/        manifest.json, state/ (a learned scorer's fitted state), _COMPLETE
    scores/<scorer>-<key>/      manifest.json, parts/<shard>.parquet, fit/ (a copy of the fit's state), _COMPLETE
    selections/<sampler>-<key>/ manifest.json, counts.npy, subset.npy (or subset-seg000.npy ...), _COMPLETE
    train/<label>-<key>/ ...    eval/<label>-<key>/ ...
    .locks/<kind>-<label>-<key>.lock   held while that artifact is built (removed on release)

A stage builds inside ``<kind>/.partial-<label>-<key>/`` (a stable name, so a killed stage resumes from its
completed units), under an exclusive lock that a second builder waits for (:mod:`.locks`).  Every file is written
to a temporary name and renamed.  Completion happens under the lock: stray temporaries are removed, every
remaining file is listed in the manifest with its digest, ``manifest.json`` is written, then ``_COMPLETE``
(holding the key and the manifest's digest), then the folder is renamed into place.  A folder without
``_COMPLETE`` is never reused; a partial folder killed after its ``_COMPLETE`` is renamed into place by the next
builder once its digests check out.

Trust nothing on disk: :meth:`Artifact.verify` checks the manifest against ``_COMPLETE``, every output against
its digest and (format 2) that no unlisted file was added; :meth:`Store.get` verifies what a stage reuses and
:meth:`Store.consume` what a stage reads.  Digests of files already verified in this process are remembered by
(inode, size, mtime, ctime), so consuming an artifact twice hashes it once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from filterbench.harness import faults
from filterbench.harness.atomic import fsync_dir, is_temporary, write_bytes_atomic, write_json_atomic
from filterbench.harness.errors import StoreError
from filterbench.harness.hashing import bytes_digest, canonical_json, content_key, file_digest
from filterbench.harness.locks import BuildLock

COMPLETE = "_COMPLETE"
MANIFEST = "manifest.json"
KINDS = ("pools", "fits", "scores", "selections", "train", "eval")
STAGE_OF_KIND = {"pools": "pool", "fits": "fit", "scores": "score", "selections": "sample", "train": "train",
                 "eval": "eval"}
#: 2: every file of the folder is an output with a digest, and ``_COMPLETE`` holds the manifest's digest.
#: Artifacts written before (no ``store_format`` in the manifest) are verified as format 1: listed outputs only.
STORE_FORMAT = 2
#: files a completed artifact may gain later (where a registered pool's files are now)
SIDECARS = frozenset({"location.json"})
_BOOKKEEPING = (MANIFEST, COMPLETE)

__all__ = ["Artifact", "Building", "Store", "write_json_atomic", "default_workdir", "interrupted_builds"]


def default_workdir() -> Path:
    return Path(os.environ.get("FILTERBENCH_HOME", "filterbench-work"))


_DIGESTS: dict[str, tuple[tuple[int, ...], str]] = {}


def cached_digest(path: Path) -> str:
    """``file_digest(path)``, remembered per (device, inode, size, mtime, ctime): any write changes ctime."""
    st = os.stat(path)
    signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _DIGESTS.get(str(path))
    if cached is not None and cached[0] == signature:
        return cached[1]
    digest = file_digest(path)
    _DIGESTS[str(path)] = (signature, digest)
    return digest


def files_under(folder: Path) -> list[str]:
    """Every regular file below ``folder`` as a sorted relative POSIX path."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


@dataclass(frozen=True)
class Artifact:
    """A completed artifact folder."""

    kind: str
    path: Path

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def manifest(self) -> dict:
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.path / MANIFEST}: unreadable manifest ({exc})") from None

    def verify(self) -> None:
        """Check the manifest against ``_COMPLETE`` and every output against its digest.

        Raises:
            StoreError: naming the first file that is missing, changed or (format 2) not listed.
        """
        manifest = self.manifest
        outputs = manifest.get("outputs", {})
        if not isinstance(outputs, dict):
            raise StoreError(f"{self.path / MANIFEST}: malformed outputs")
        if manifest.get("store_format", 1) >= 2:
            self._verify_manifest_digest()
            extra = [f for f in files_under(self.path)
                     if f not in outputs and f not in _BOOKKEEPING and f not in SIDECARS]
            if extra:
                raise StoreError(f"{self.path / extra[0]}: file not listed in the manifest (added after completion?)"
                                 f"; delete the folder {self.path} to rebuild it")
        for name, meta in sorted(outputs.items()):
            target = self.path / name
            if not target.is_file():
                raise StoreError(f"{target}: output listed in the manifest is missing; delete the folder "
                                 f"{self.path} to rebuild it")
            try:
                digest = cached_digest(target)
            except OSError as exc:
                raise StoreError(f"{target}: unreadable ({exc.strerror or exc})") from None
            if digest != meta.get("digest"):
                raise StoreError(f"{target}: digest differs from the manifest (modified after completion?); "
                                 f"delete the folder {self.path} to rebuild it")

    def _verify_manifest_digest(self) -> None:
        try:
            lines = (self.path / COMPLETE).read_text().split()
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path / COMPLETE}: unreadable completion marker ({exc})") from None
        recorded = lines[1] if len(lines) > 1 else None
        try:
            actual = cached_digest(self.path / MANIFEST)
        except OSError as exc:
            raise StoreError(f"{self.path / MANIFEST}: unreadable ({exc.strerror or exc})") from None
        if recorded != actual:
            raise StoreError(f"{self.path / MANIFEST}: manifest differs from the digest in {COMPLETE} "
                             f"(edited after completion?); delete the folder {self.path} to rebuild it")


#: what builds that ended in an exception left behind, for the CLI's one-line message (most recent last)
_INTERRUPTED: list[str] = []


def interrupted_builds() -> list[str]:
    """Descriptions of builds stopped in this process (Ctrl-C, SIGTERM, a full disk, an error): what was kept
    for the resume."""
    return list(_INTERRUPTED)


def unit_record(folder: Path, unit: str) -> dict | None:
    """The record a finished unit left in a partial folder, or None if it must (re)run.

    A marker that is unreadable, or whose files are missing or differ from the digests it recorded, is not
    trusted: the unit runs again.  Module-level (a folder, no lock) so that workers on other processes or
    nodes can check and mark units while the driver holds the build lock.
    """
    marker = folder / "units" / f"{unit}.json"
    try:
        record = json.loads(marker.read_text())
        files = record["files"]
        if record.get("unit") != unit or not isinstance(files, dict):
            raise ValueError("not this unit's marker")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        marker.unlink(missing_ok=True)  # damaged (torn or edited): redo the unit
        return None
    for name, digest in files.items():
        target = folder / name
        if not target.is_file() or file_digest(target) != digest:
            return None  # the marker outlived its file (or the file was damaged): redo the unit
    return record


def mark_unit(folder: Path, unit: str, files: list[str], **info: Any) -> dict:
    """Record a finished unit, after its files were committed (the marker is written last)."""
    record = {"unit": unit, "files": {f: file_digest(folder / f) for f in files}, **info}
    write_json_atomic(folder / "units" / f"{unit}.json", record)
    return record


class Building:
    """A stage under construction: a stable partial folder, per-unit completion markers, an exclusive lock.

    Entering waits for another builder of the same artifact; if that one completed it meanwhile,
    :attr:`done` holds the finished artifact and the stage returns it instead of building again.
    """

    def __init__(self, store: "Store", kind: str, label: str, key: str, inputs: dict):
        self.store, self.kind, self.label, self.key, self.inputs = store, kind, label, key, inputs
        self.final = store.folder(kind, label, key)
        self.dir = self.final.parent / f".partial-{self.final.name}"
        self.outputs: dict[str, dict] = {}
        self.done: Artifact | None = None
        self._lock = BuildLock(store.root / ".locks" / f"{kind}-{self.final.name}.lock",
                               f"{kind}/{self.final.name}")

    def __enter__(self) -> "Building":
        self._lock.acquire()
        try:
            self.done = self._completed_meanwhile()
            if self.done is None:
                self._open_partial()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None and self.done is None and self.dir.is_dir():
                units = len(list((self.dir / "units").glob("*.json")))
                _INTERRUPTED.append(f"kept {units} finished unit(s) of {self.kind}/{self.final.name} in "
                                    f"{self.dir}")
        finally:
            self._lock.release()

    def _completed_meanwhile(self) -> Artifact | None:
        """The finished artifact if another builder completed it, or a kill struck just before the rename."""
        if (self.final / COMPLETE).exists():
            artifact = Artifact(self.kind, self.final)
            artifact.verify()
            return artifact
        if (self.dir / COMPLETE).exists():
            try:
                Artifact(self.kind, self.dir).verify()
            except StoreError:
                (self.dir / COMPLETE).unlink()  # not a sound completion: finish it again
                return None
            os.replace(self.dir, self.final)
            fsync_dir(self.final.parent)
            return Artifact(self.kind, self.final)
        return None

    def _open_partial(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        inputs = json.loads(canonical_json(self.inputs))
        try:
            previous = json.loads((self.dir / "inputs.json").read_text())
        except (OSError, ValueError):
            previous = None
        if previous != inputs:
            shutil.rmtree(self.dir / "units", ignore_errors=True)  # same key, other inputs: stale leftovers
            write_json_atomic(self.dir / "inputs.json", inputs)
        (self.dir / "units").mkdir(exist_ok=True)

    # -- per-unit resume -------------------------------------------------------------------------------------
    def unit_done(self, unit: str) -> dict | None:
        """The record a finished unit (shard, task, segment) left, or None if it must (re)run
        (:func:`unit_record`)."""
        return unit_record(self.dir, unit)

    def mark_unit(self, unit: str, files: list[str], **info: Any) -> dict:
        return mark_unit(self.dir, unit, files, **info)

    def add_output(self, name: str, **meta: Any) -> None:
        self.outputs[name] = {"digest": cached_digest(self.dir / name), **meta}

    # -- completion ------------------------------------------------------------------------------------------
    def finish(self, manifest: dict) -> Artifact:
        """Complete the artifact, atomically and under the lock.

        Removes stray temporaries and the resume bookkeeping, lists every remaining file as an output, writes
        the manifest and the completion marker (key and manifest digest), then renames the folder into place.
        """
        from filterbench.harness.provenance import environment, git_commit

        if self.done is not None:
            return self.done
        self._sweep()
        for name in files_under(self.dir):
            if name not in self.outputs and name not in _BOOKKEEPING:
                self.add_output(name)
        full = {"kind": self.kind, "stage": STAGE_OF_KIND[self.kind], "label": self.label, "key": self.key,
                "store_format": STORE_FORMAT, "inputs": json.loads(canonical_json(self.inputs)),
                "outputs": dict(sorted(self.outputs.items())), "provenance": {**environment(), "git": git_commit()},
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **manifest}
        text = (json.dumps(full, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        write_bytes_atomic(self.dir / MANIFEST, text)
        write_bytes_atomic(self.dir / COMPLETE, f"{self.key}\n{bytes_digest(text)}\n".encode())
        faults.point("complete, not yet renamed")
        os.replace(self.dir, self.final)
        fsync_dir(self.final.parent)
        faults.point("renamed into place")
        self.done = Artifact(self.kind, self.final)
        self.store.notify(self.done)
        return self.done

    def _sweep(self) -> None:
        """Remove what must not reach the finished artifact: temporaries of killed writers, resume bookkeeping."""
        shutil.rmtree(self.dir / "units", ignore_errors=True)
        (self.dir / "inputs.json").unlink(missing_ok=True)
        for name in files_under(self.dir):
            if is_temporary(Path(name).name):
                (self.dir / name).unlink()


class Store:
    """Artifacts under one work directory."""

    def __init__(self, root: str | Path | None = None, hooks: Any = None):
        self.root = Path(root) if root is not None else default_workdir()
        self.hooks = hooks

    def folder(self, kind: str, label: str, key: str) -> Path:
        if kind not in KINDS:
            raise StoreError(f"unknown artifact kind {kind!r}")
        return self.root / kind / f"{label}-{key}"

    def key_for(self, inputs: dict) -> str:
        return content_key(inputs)

    def get(self, kind: str, label: str, key: str, verify: bool = True) -> Artifact | None:
        """The completed artifact for this key, or None.  Verifies output digests unless told not to."""
        folder = self.folder(kind, label, key)
        if not (folder / COMPLETE).exists():
            return None
        artifact = Artifact(kind, folder)
        if verify:
            artifact.verify()
        return artifact

    def build(self, kind: str, label: str, key: str, inputs: dict) -> Building:
        """A :class:`Building` to use as a context manager; return ``building.done`` when it is set."""
        return Building(self, kind, label, key, inputs)

    def consume(self, *artifacts: Artifact) -> None:
        """Verify every artifact a stage is about to read: a stage never builds on a changed input.

        Raises:
            StoreError: naming the first missing, changed or unlisted file.
        """
        for artifact in artifacts:
            artifact.verify()

    def notify(self, artifact: Artifact) -> None:
        if self.hooks is not None:
            self.hooks.hook_stage_finished(STAGE_OF_KIND[artifact.kind], artifact.manifest)

    def iter_artifacts(self, kind: str | None = None) -> Iterator[Artifact]:
        for k in ([kind] if kind else KINDS):
            base = self.root / k
            if base.is_dir():
                for folder in sorted(base.iterdir()):
                    if (folder / COMPLETE).exists():
                        yield Artifact(k, folder)

    def find(self, ref: str | Path, kind: str | None = None) -> Artifact:
        """Resolve a folder path, a full key or a unique key prefix (>= 4 hex chars) to an artifact."""
        path = Path(ref)
        if path.is_dir():
            if not (path / COMPLETE).exists():
                raise StoreError(f"{path}: not a completed artifact (no {COMPLETE})")
            found_kind = path.parent.name if path.parent.name in KINDS else (kind or "unknown")
            return Artifact(found_kind, path)
        text = str(ref)
        if len(text) < 4:
            raise StoreError(f"artifact reference {text!r} is too short (give at least 4 key characters)")
        matches = [a for a in self.iter_artifacts(kind) if a.path.name.rsplit("-", 1)[-1].startswith(text)
                   or a.path.name == text]
        if not matches:
            raise StoreError(f"no completed {kind or 'artifact'} matches {text!r} under {self.root}")
        if len(matches) > 1:
            names = ", ".join(f"{m.kind}/{m.path.name}" for m in matches[:5])
            raise StoreError(f"artifact reference {text!r} is ambiguous: {names}")
        return matches[0]
