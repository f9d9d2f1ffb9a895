"""Name → factory registries that third parties extend through Python entry points.

A plug-in package adds a network without editing medseg by declaring, in its pyproject.toml::

    [project.entry-points."medseg.networks"]
    mynet = "mypackage.mynet:build_mynet"

The entry point's object is registered under the entry point's name the first time the registry is
queried. The same holds for ``medseg.losses`` and other groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator

from medseg.errors import MedsegError


@dataclass
class Entry:
    name: str
    factory: Callable[..., Any]
    metadata: dict[str, Any] = field(default_factory=dict)


class Registry:
    """A named collection of factories.

    Parameters
    ----------
    kind : str
        What is registered ("network", "loss", ...), used in error messages.
    entry_point_group : str, optional
        Python entry point group scanned for third-party additions.

    Examples
    --------
    >>> losses = Registry("loss")
    >>> @losses.register("l1", citation="-")
    ... def build_l1():
    ...     return abs
    >>> losses.get("l1")()(-2)
    2
    """

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, **metadata: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``factory`` under ``name`` with free-form metadata."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, factory, **metadata)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., Any], **metadata: Any) -> None:
        key = name.lower()
        if key in self._entries and self._entries[key].factory is not factory:
            raise MedsegError(f"{self.kind} '{name}' is already registered")
        self._entries[key] = Entry(key, factory, dict(metadata))

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name.lower() in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plug-in must not break medseg itself
                raise MedsegError(
                    f"{self.kind} plug-in '{ep.name}' ({ep.value}) failed to load: {exc}"
                ) from exc
            metadata = dict(getattr(obj, "medseg_metadata", {}))
            self.add(ep.name, obj, **metadata)

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).factory

    def entry(self, name: str) -> Entry:
        self._load_plugins()
        try:
            return self._entries[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise MedsegError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name.lower() in self._entries

    def __iter__(self) -> Iterator[Entry]:
        self._load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))
