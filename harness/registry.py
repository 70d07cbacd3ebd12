"""A name -> class registry that fails loudly: duplicates name both owners, unknown names suggest spellings."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from filterbench.harness.errors import PluginError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds plugin classes of one kind (scorers or samplers) by name.

    Args:
        kind: ``"scorer"`` or ``"sampler"``, used in messages.
        base: the class every entry must subclass.
    """

    def __init__(self, kind: str, base: type[T]):
        self.kind = kind
        self.base = base
        self._classes: dict[str, type[T]] = {}
        self._owners: dict[str, str] = {}

    def add(self, cls: type[T], owner: str, aliases: tuple[str, ...] = ()) -> None:
        """Register ``cls`` under its ``name`` (and aliases); ``owner`` is the plugin that registered it."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(f"plugin {owner!r} registered {cls!r} as a {self.kind}, "
                              f"but it is not a subclass of {self.base.__name__}")
        name = getattr(cls, "name", "")
        if not name or not name.replace("_", "").isalnum() or name != name.lower():
            raise PluginError(f"plugin {owner!r}: {self.kind} {cls.__name__} needs a snake_case `name` (got {name!r})")
        for key in (name, *aliases):
            if key in self._classes:
                raise PluginError(f"duplicate {self.kind} name {key!r}: registered by plugin "
                                  f"{self._owners[key]!r} and again by plugin {owner!r}")
            self._classes[key] = cls
            self._owners[key] = owner

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; unknown names fail with "did you mean"."""
        try:
            return self._classes[name]
        except KeyError:
            hint = did_you_mean(name, self._classes)
            known = ", ".join(sorted(self._classes)) or "none"
            raise PluginError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[tuple[str, type[T]]]:
        return iter(sorted(self._classes.items()))
