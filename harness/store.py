"""The artifact store: content-addressed, resumable stage folders with JSON ID cards (manifests).

Layout under the work directory (``--workdir`` or ``$FILTERBENCH_HOME``, default ``./filterbench-work``)::

    pools/<label>-<key>/        manifest.json, uids.npy, _COMPLETE
    fits/<scorer>-<key>/        manifest.json, state/ (a learned scorer's fitted state), _COMPLETE
    scores/<scorer>-<key>/      manifest.json, parts/<shard>.parquet, fit/ (a copy of the fit's state), _COMPLETE
    selections/<sampler>-<key>/ manifest.json, counts.npy, subset.npy (or subset-seg000.npy ...), _COMPLETE
    train/<label>-<key>/ ...    eval/<label>-<key>/ ...

A stage builds inside ``<kind>/.partial-<label>-<key>/`` (a stable name, so a killed stage resumes from its
completed shards), writes every file to a temporary name and renames it, then writes ``manifest.json`` and
``_COMPLETE`` and renames the whole folder into place.  A folder without ``_COMPLETE`` is never reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from filterbench.harness.errors import StoreError
from filterbench.harness.hashing import canonical_json, content_key, file_digest

COMPLETE = "_COMPLETE"
MANIFEST = "manifest.json"
KINDS = ("pools", "fits", "scores", "selections", "train", "eval")
STAGE_OF_KIND = {"pools": "pool", "fits": "fit", "scores": "score", "selections": "sample", "train": "train",
                 "eval": "eval"}


def default_workdir() -> Path:
    return Path(os.environ.get("FILTERBENCH_HOME", "filterbench-work"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary name, fsync, rename: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.path / MANIFEST}: unreadable manifest ({exc})") from None

    def verify(self) -> None:
        """Check every output file against the digest in the manifest."""
        for name, meta in self.manifest.get("outputs", {}).items():
            target = self.path / name
            if not target.is_file():
                raise StoreError(f"{self.path}: output {name} listed in the manifest is missing")
            if file_digest(target) != meta["digest"]:
                raise StoreError(f"{target}: digest differs from the manifest (modified after completion?)")


class Building:
    """A stage under construction: a stable partial folder, per-unit completion markers, an exclusive lock."""

    def __init__(self, store: "Store", kind: str, label: str, key: str, inputs: dict):
        self.store, self.kind, self.label, self.key, self.inputs = store, kind, label, key, inputs
        self.final = store.folder(kind, label, key)
        self.dir = self.final.parent / f".partial-{self.final.name}"
        self.outputs: dict[str, dict] = {}

    def __enter__(self) -> "Building":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{self.dir}: another process is building this artifact") from None
        inputs_file = self.dir / "inputs.json"
        if inputs_file.exists() and json.loads(inputs_file.read_text()) != json.loads(canonical_json(self.inputs)):
            shutil.rmtree(self.dir / "units", ignore_errors=True)  # same key, other inputs: stale leftovers
        write_json_atomic(inputs_file, json.loads(canonical_json(self.inputs)))
        (self.dir / "units").mkdir(exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.close()

    # -- per-unit resume -------------------------------------------------------------------------------------
    def unit_done(self, unit: str) -> dict | None:
        """The record a finished unit (shard, task, segment) left, or None if it must (re)run."""
        marker = self.dir / "units" / f"{unit}.json"
        if not marker.exists():
            return None
        record = json.loads(marker.read_text())
        for name, digest in record.get("files", {}).items():
            target = self.dir / name
            if not target.is_file() or file_digest(target) != digest:
                return None  # the marker outlived its file (or the file was damaged): redo the unit
        return record

    def mark_unit(self, unit: str, files: list[str], **info: Any) -> dict:
        record = {"unit": unit, "files": {f: file_digest(self.dir / f) for f in files}, **info}
        write_json_atomic(self.dir / "units" / f"{unit}.json", record)
        return record

    def add_output(self, name: str, **meta: Any) -> None:
        self.outputs[name] = {"digest": file_digest(self.dir / name), **meta}

    # -- completion ------------------------------------------------------------------------------------------
    def finish(self, manifest: dict) -> Artifact:
        """Write the manifest and the completion marker, then rename the folder into place."""
        from filterbench.harness.provenance import environment, git_commit

        full = {"kind": self.kind, "stage": STAGE_OF_KIND[self.kind], "label": self.label, "key": self.key,
                "inputs": json.loads(canonical_json(self.inputs)), "outputs": self.outputs,
                "provenance": {**environment(), "git": git_commit()},
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **manifest}
        write_json_atomic(self.dir / MANIFEST, full)
        shutil.rmtree(self.dir / "units", ignore_errors=True)
        for leftover in ("inputs.json", ".lock"):
            (self.dir / leftover).unlink(missing_ok=True)
        (self.dir / COMPLETE).write_text(self.key + "\n")
        if self.final.exists():  # a concurrent identical build finished first: keep the existing one
            shutil.rmtree(self.dir)
        else:
            os.replace(self.dir, self.final)
        artifact = Artifact(self.kind, self.final)
        self.store.notify(artifact)
        return artifact


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
        return Building(self, kind, label, key, inputs)

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
