"""Worlds: a pool together with everything a recipe is run and scored against on it.

A world bundles

* ``pool``: a folder in DataComp's pool layout (``metadata/*.parquet`` + ``.npz``, ``shards/*.tar``);
* ``evalsets``: a folder of eval sets in the layout of DataComp's ``download_evalsets.py`` (``wds_<task>_test/``)
  and ``tasklist``, the task list scored on them (a name such as ``datacomp_v1``, or a file);
* ``inputs``: named target and auxiliary inputs that recipes refer to by role (``imagenet_train``: the target
  image features of NormSim and the image-based filter; ``imagenet21k``: the text-based filter's vocabulary);
* ``oracle``: optionally, ground truth per pool uid (``*.parquet`` with ``uid`` and ``noise_type``).

Providers register worlds through the ``register_worlds`` hook (:mod:`filterbench.harness.hookspecs`) as
:class:`WorldSource` objects: cheap to list, opened (located, or built) only when a run needs one.  The nano
world (``nano-xs``, ``nano``) and locally registered DataComp downloads (``filterbench world add``) are two
built-in providers; the harness itself knows neither.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from filterbench.harness.errors import FilterbenchError

Log = Callable[[str], None]
WORLD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class WorldError(FilterbenchError):
    """A world is unknown, badly registered, or one of its parts is missing."""


@dataclass(frozen=True)
class World:
    """An opened world: every part is a path on this machine (or None where the world has none).

    Attributes:
        name: the world's name (``nano-xs``, a registered download's name, or ``pool:<folder>`` for a bare
            ``--pool``).
        pool: pool folder (None only for a world assembled from command-line parts that read no pool).
        evalsets: eval-set folder, or None.
        tasklist: task list name or file, or None (the evaluation's default, ``datacomp_v1``).
        inputs: role -> file or folder (read-only).
        oracle: folder of ground-truth parquet files, or None.
        provider: the plugin that registered the world ("" for one assembled from command-line parts).
    """

    name: str
    pool: Path | None
    evalsets: Path | None = None
    tasklist: str | None = None
    inputs: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    oracle: Path | None = None
    provider: str = ""

    def parts(self) -> dict[str, Any]:
        """The world's parts by name, for ``world show`` and checks."""
        return {"pool": self.pool, "evalsets": self.evalsets, "tasklist": self.tasklist,
                **{f"input:{role}": path for role, path in sorted(self.inputs.items())}, "oracle": self.oracle}

    def describe(self) -> dict[str, Any]:
        """JSON-able description (paths as strings, absent parts left out)."""
        return {"name": self.name, "provider": self.provider,
                **{k: str(v) for k, v in self.parts().items() if v is not None}}


@dataclass(frozen=True)
class WorldSource:
    """A world as a provider offers it: a name and a description, opened only on demand.

    Attributes:
        name: unique world name (letters, digits, ``_.-``).
        description: one line for ``filterbench world ls``.
        open: ``open(log)`` returns the :class:`World`, building it first when the provider builds worlds
            (``log`` receives one line per phase, or is None).
        locate: returns the World when opening it costs nothing (already built), else None; None for
            providers whose worlds are always ready (then ``open`` is used).
        scales: scales for which this world is the default (``--scale nano-xs`` runs on world ``nano-xs``).
        provider: set by the registry to the plugin that registered the source.
    """

    name: str
    description: str
    open: Callable[[Log | None], World]
    locate: Callable[[], World | None] | None = None
    scales: tuple[str, ...] = ()
    provider: str = ""

    def ready(self) -> World | None:
        """The world if it can be used without building anything, else None."""
        return self.locate() if self.locate is not None else self.open(None)


def world_sources(plugins: Any, workdir: Path) -> dict[str, WorldSource]:
    """Every world that the loaded plugins register (``register_worlds`` hook), by name.

    Raises:
        WorldError: a name is invalid or registered twice (naming both providers), or a default scale is
            claimed by two worlds.
    """
    sources: dict[str, WorldSource] = {}
    for impl in plugins.pm.hook.register_worlds.get_hookimpls():
        def register(source: WorldSource, _owner: str = impl.plugin_name) -> None:
            _add(sources, dataclasses.replace(source, provider=_owner))

        impl.function(**_hook_kwargs(impl, register=register, workdir=Path(workdir)))
    _check_scale_defaults(sources)
    return sources


def _hook_kwargs(impl: Any, **available: Any) -> dict[str, Any]:
    """The arguments an implementation asked for (pluggy lets it take a subset of the spec's)."""
    return {name: available[name] for name in impl.argnames}


def _add(sources: dict[str, WorldSource], source: WorldSource) -> None:
    if not WORLD_NAME.match(source.name):
        raise WorldError(f"plugin {source.provider!r} registered a world named {source.name!r}; names are "
                         "letters, digits, '_', '.' and '-'")
    other = sources.get(source.name)
    if other is not None:
        raise WorldError(f"world {source.name!r} is registered by both {other.provider!r} and {source.provider!r}")
    sources[source.name] = source


def _check_scale_defaults(sources: dict[str, WorldSource]) -> None:
    owners: dict[str, str] = {}
    for source in sources.values():
        for scale in source.scales:
            if scale in owners:
                raise WorldError(f"worlds {owners[scale]!r} and {source.name!r} both claim to be scale "
                                 f"{scale!r}'s default world")
            owners[scale] = source.name


def find_world(name: str, sources: Mapping[str, WorldSource]) -> WorldSource:
    """The source of world ``name``; an unknown name fails with "did you mean" and the known names."""
    if name in sources:
        return sources[name]
    close = difflib.get_close_matches(name, list(sources), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    known = ", ".join(sorted(sources)) or "none: see `filterbench world add --help`"
    raise WorldError(f"unknown world {name!r}{hint} (known: {known})")


def default_world(scale: str, sources: Mapping[str, WorldSource]) -> WorldSource | None:
    """The world registered as the default of ``scale``, if any."""
    return next((s for s in sources.values() if scale in s.scales), None)
