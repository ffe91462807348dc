"""Registries of the named things a package's modules declare (executors, datasets, backends),
each a class decorated with its registry's `register("name")`: a new one is one file that no
other file names. A plugin file (a folder of $KDBENCH_PLUGINS, loaded with the methods) adds one
with the same decorator."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Instances of registered classes by name, listed by their `order`, then name."""

    def __init__(self, package: str, what: str, reserved: tuple[str, ...] = ()):
        self.package, self.what, self.reserved = package, what, reserved
        self._found: dict[str, T] = {}
        self._imported = False

    def register(self, name: str) -> Callable[[type], type]:
        def decorate(cls: type) -> type:
            if name in self._found or name in self.reserved:
                raise ValueError(f"{self.what} '{name}' is registered twice")
            cls.name = name
            self._found[name] = cls()
            return cls

        return decorate

    def all(self) -> dict[str, T]:
        """Every one: the package's modules and the plugin files, imported once (a plugin loaded
        later registers itself)."""
        if not self._imported:
            importlib.import_module("methods")  # loads $KDBENCH_PLUGINS
            for module in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self._imported = True
        return dict(sorted(self._found.items(),
                           key=lambda item: (getattr(item[1], "order", 100), item[0])))

    def get(self, name: str) -> T | None:
        return self._found[name] if name in self._found else self.all().get(name)
