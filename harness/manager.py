"""Finding and loading plugins, each in isolation, and the scorer/sampler registries built from them."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from filterbench.harness import hookspecs
from filterbench.harness.contract import Sampler, Scorer
from filterbench.harness.errors import PluginError
from filterbench.harness.registry import Registry

ENTRY_POINT_GROUP = "filterbench"


@dataclass
class PluginInfo:
    """One plugin as ``filterbench plugins`` lists it."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    scorers: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)


class Plugins:
    """The plugin manager plus the registries.  Build it with :func:`get_plugins`; tests build their own."""

    def __init__(self, load_entry_points: bool = True, extra: tuple[tuple[str, Any], ...] = ()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        if load_entry_points:
            self._load_entry_points()
        for name, obj in extra:
            self.add(name, obj)
        self.pm.check_pending()
        self._scorers: Registry[Scorer] | None = None
        self._samplers: Registry[Sampler] | None = None
        self._executors: Registry | None = None

    # -- loading ---------------------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        only = os.environ.get("FILTERBENCH_LOAD_PLUGINS")
        allowed = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        blocked = {n.strip() for n in os.environ.get("FILTERBENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}
        points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        for ep in points:
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(ep.name, ep.value, dist.name if dist else None, dist.version if dist else None)
            self._register_isolated(info, ep.load)

    def add(self, name: str, obj: Any) -> None:
        """Register a plugin object or module directly (tests, notebooks, one-off plugins)."""
        module = obj if isinstance(obj, str) else getattr(obj, "__name__", type(obj).__name__)
        loader = (lambda: importlib.import_module(obj)) if isinstance(obj, str) else (lambda: obj)
        self._register_isolated(PluginInfo(name, module), loader)
        self._scorers = self._samplers = self._executors = None

    def _register_isolated(self, info: PluginInfo, loader: Any) -> None:
        self.infos[info.name] = info
        try:
            plugin = loader()
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # a broken plugin must not take the others down
            self._failed(info, "failed to load", exc)

    def _failed(self, info: PluginInfo, what: str, exc: Exception) -> None:
        """Record a plugin's failure (``plugins`` lists it); fatal only under FILTERBENCH_STRICT_PLUGINS=1."""
        info.error = info.error or f"{type(exc).__name__}: {exc}"
        info.traceback = traceback.format_exc()  # type: ignore[attr-defined]
        if os.environ.get("FILTERBENCH_STRICT_PLUGINS") == "1":
            raise PluginError(f"plugin {info.name!r} ({info.module}) {what}: {info.error}") from exc

    def call_hook(self, hook_name: str, kwargs_for: Callable[[str], dict]) -> list[str]:
        """Call a registration hook plugin by plugin, with ``kwargs_for(plugin name)``.

        A plugin whose hook raises is marked failed (``filterbench plugins`` lists it) and skipped, as one that
        fails to import is; the others keep working.  Errors the harness raises from inside a hook (a duplicate
        name, a class that is not a Scorer) propagate.  Returns the plugins whose hook returned.
        """
        succeeded = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.infos.setdefault(impl.plugin_name, PluginInfo(impl.plugin_name, impl.plugin_name))
            if info.error:
                continue
            try:
                impl.function(**kwargs_for(impl.plugin_name))
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - third-party code: report it, keep the others working
                info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                self._failed(info, f"raised in {hook_name}", exc)
                continue
            succeeded.append(impl.plugin_name)
        return succeeded

    # -- registries ------------------------------------------------------------------------------------------
    def _collect(self, kind: str, base: type, hook_name: str) -> Registry:
        registry: Registry = Registry(kind, base)
        pending: dict[str, list] = {}

        def kwargs_for(owner: str) -> dict:
            def register(cls: type, aliases: tuple[str, ...] = ()) -> None:
                pending.setdefault(owner, []).append((cls, tuple(aliases)))
            return {"register": register}

        # only plugins whose hook returned register anything (not half their list)
        for owner in self.call_hook(hook_name, kwargs_for):
            entries = pending.get(owner, [])
            for cls, aliases in entries:
                registry.add(cls, owner, aliases)
            getattr(self.infos[owner], f"{kind}s").extend(cls.name for cls, _ in entries)
        return registry

    @property
    def scorers(self) -> Registry[Scorer]:
        if self._scorers is None:
            self._scorers = self._collect("scorer", Scorer, "register_scorers")
        return self._scorers

    @property
    def executors(self) -> Registry:
        """Executors that plugins add (``register_executors``); the harness's own four are not in it."""
        if self._executors is None:
            from filterbench.harness.executor import Executor

            self._executors = self._collect("executor", Executor, "register_executors")
        return self._executors

    @property
    def samplers(self) -> Registry[Sampler]:
        if self._samplers is None:
            self._samplers = self._collect("sampler", Sampler, "register_samplers")
        return self._samplers

    def model_config_owners(self) -> dict[str, list[str]]:
        """Plugin name -> folders of open_clip model configs it registers (``register_model_configs``)."""
        from pathlib import Path

        owners: dict[str, list[str]] = {}

        def kwargs_for(owner: str) -> dict:
            folders = owners.setdefault(owner, [])
            return {"register": lambda path: folders.append(str(Path(path).resolve()))}

        succeeded = self.call_hook("register_model_configs", kwargs_for)
        return {owner: owners[owner] for owner in succeeded}

    def model_config_dirs(self) -> list:
        """Every folder of open_clip model configs that plugins register, sorted."""
        from pathlib import Path

        return sorted({Path(f) for folders in self.model_config_owners().values() for f in folders})

    def _unknown(self, kind: str, name: str, registry: Registry) -> PluginError:
        """Explain an unknown name: it may belong to a plugin that failed to load."""
        broken = [i for i in self.infos.values() if i.error]
        if broken:
            listed = "; ".join(f"{i.name} ({i.error})" for i in broken)
            return PluginError(f"unknown {kind} {name!r}; these plugins failed to load and may provide it: "
                               f"{listed} (see `filterbench plugins`)")
        try:
            registry.get(name)
        except PluginError as exc:
            return exc
        return PluginError(f"unknown {kind} {name!r}")

    def scorer_class(self, name: str) -> type[Scorer]:
        if name not in self.scorers:
            raise self._unknown("scorer", name, self.scorers)
        return self.scorers.get(name)

    def sampler_class(self, name: str) -> type[Sampler]:
        if name not in self.samplers:
            raise self._unknown("sampler", name, self.samplers)
        return self.samplers.get(name)

    def distribution_of(self, plugin_name: str) -> dict[str, str | None]:
        info = self.infos.get(plugin_name)
        return {"plugin": plugin_name, "distribution": info.distribution if info else None,
                "distribution_version": info.version if info else None}

    def hook_stage_finished(self, stage: str, manifest: dict) -> None:
        import logging

        try:
            self.pm.hook.stage_finished(stage=stage, manifest=manifest)
        except Exception as exc:  # observers must never fail a stage
            logging.getLogger("filterbench").warning("stage_finished hook failed: %s", exc)


_PLUGINS: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin set, loaded lazily on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = Plugins()
    return _PLUGINS


def reset_plugins(plugins: Plugins | None = None) -> None:
    """Replace (or forget) the process-wide plugin set; used by tests."""
    global _PLUGINS
    _PLUGINS = plugins
