"""Worlds registered once by the user: a local DataComp download, kept in the store as ``worlds/<name>.json``.

``filterbench world add NAME --pool DIR --evalsets DIR [--target PATH]`` checks every part and writes the
description; afterwards ``--world NAME`` names the download on every command.  The built-in provider
``filterbench.plugins.datacomp_world`` registers each stored description as a world.

A description holds absolute paths (the store is per machine) and the task list (``datacomp_v1`` unless given):

    {"format": "filterbench-world/1", "name": "dc-small", "pool": "/data/datacomp/small",
     "evalsets": "/data/datacomp/evalsets", "tasklist": "datacomp_v1",
     "inputs": {"imagenet_train": "/data/datacomp/in1k_l14"}, "oracle": null}
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

from filterbench.harness.worlds import WORLD_NAME, World, WorldError

FORMAT = "filterbench-world/1"
FOLDER = "worlds"
#: the role a bare ``--target PATH`` fills: DataComp's ImageNet-1k-train image features (NormSim, image-based)
DEFAULT_TARGET_ROLE = "imagenet_train"


def world_file(workdir: Path, name: str) -> Path:
    return Path(workdir) / FOLDER / f"{name}.json"


def describe_download(name: str, pool: Path, evalsets: Path | None, tasklist: str | None,
                      inputs: dict[str, Path], oracle: Path | None = None) -> World:
    """The world of a DataComp download, paths made absolute; nothing is checked here."""
    if not WORLD_NAME.match(name):
        raise WorldError(f"world name {name!r}: use letters, digits, '_', '.' and '-'")
    absolute = {role: Path(path).expanduser().resolve() for role, path in inputs.items()}
    return World(name, Path(pool).expanduser().resolve(),
                 Path(evalsets).expanduser().resolve() if evalsets is not None else None,
                 tasklist or "datacomp_v1", MappingProxyType(absolute),
                 Path(oracle).expanduser().resolve() if oracle is not None else None)


def save_world(workdir: Path, world: World) -> Path:
    """Write ``world``'s description into the store; returns the file."""
    from filterbench.harness.store import write_json_atomic

    path = world_file(workdir, world.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"format": FORMAT, "name": world.name, "pool": str(world.pool),
                             "evalsets": None if world.evalsets is None else str(world.evalsets),
                             "tasklist": world.tasklist,
                             "inputs": {role: str(p) for role, p in sorted(world.inputs.items())},
                             "oracle": None if world.oracle is None else str(world.oracle)})
    return path


def remove_world(workdir: Path, name: str) -> Path:
    """Forget a registered download (its files are left alone); returns the description removed."""
    path = world_file(workdir, name)
    if not path.is_file():
        raise WorldError(f"no registered world {name!r} in {path.parent}")
    path.unlink()
    return path


def stored_worlds(workdir: Path) -> list[World]:
    """Every world described under ``<workdir>/worlds/``, by name.

    Raises:
        WorldError: a description is unreadable or malformed (naming the file).
    """
    folder = Path(workdir) / FOLDER
    return [_read(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _read(path: Path) -> World:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorldError(f"{path}: unreadable world description ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WorldError(f"{path}: not a world description (format {FORMAT!r} expected)")
    try:
        return World(data["name"], Path(data["pool"]), _path(data.get("evalsets")), data.get("tasklist"),
                     MappingProxyType({r: Path(p) for r, p in (data.get("inputs") or {}).items()}),
                     _path(data.get("oracle")))
    except (KeyError, TypeError) as exc:
        raise WorldError(f"{path}: malformed world description ({type(exc).__name__}: {exc})") from None


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)
