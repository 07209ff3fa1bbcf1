"""One lazy registry class: names -> ``"module:attr"`` paths (or objects), imported on first use.

Every registry of rayrg is one of these: RG-VLM backends, label methods, environments and
dataset formats. An entry is a ``"module:attr"`` string, imported only when its name is first
looked up (so one entry's optional dependency never breaks another), or the object itself.
An unknown name is one :class:`~rayrg.config.ConfigError` line listing the known names. With
``plugins=True`` a missing name first imports the modules of ``RAYRG_PLUGINS``
(:mod:`rayrg.plugins`), for entries registered outside rayrg in another process.

A registry is a mutable mapping of the raw entries (``reg[name] = "mod:attr"``; tests
``monkeypatch.setitem`` it); :meth:`Registry.load` returns the imported object.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from rayrg.config import ConfigError

T = TypeVar("T")


def resolve(path: str) -> Any:
    """The object a ``"module:attr"`` path names."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{path!r}: expected 'module:attribute'")
    return getattr(importlib.import_module(module), attr)


class Registry(MutableMapping[str, "str | T"], Generic[T]):
    """Name -> ``"module:attr"`` or object; :meth:`load` imports on first use and keeps it."""

    def __init__(self, kind: str, entries: Mapping[str, str | T] | None = None, *,
                 unknown: str = "unknown {kind} {name!r}", plugins: bool = False,
                 check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._unknown = unknown
        self._plugins = plugins
        self._check = check
        self._entries: dict[str, str | T] = {}
        self._loaded: dict[str, T] = {}
        for name, entry in (entries or {}).items():
            self[name] = entry

    # MutableMapping of the raw entries
    def __getitem__(self, name: str) -> str | T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: str | T) -> None:
        self._loaded.pop(name, None)
        if not isinstance(entry, str) and self._check is not None:
            self._check(name, entry)
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self._entries!r})"

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def error(self, name: str) -> ConfigError:
        """The one line for an unknown ``name``, listing the known ones."""
        known = ", ".join(sorted(self._entries)) or "none"
        return ConfigError(f"{self._unknown.format(kind=self.kind, name=name)}; known: {known}")

    def load(self, name: str) -> T:
        """The object registered as ``name``, imported now if it is a path."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._entries and self._plugins:
            from rayrg.plugins import load_plugins

            load_plugins()
        if name not in self._entries:
            raise self.error(name)
        entry = self._entries[name]
        obj = resolve(entry) if isinstance(entry, str) else entry
        if isinstance(entry, str) and self._check is not None:
            self._check(name, obj)
        self._loaded[name] = obj
        return obj
