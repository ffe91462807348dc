"""Loss methods for logit distillation: `create(name, **params)` builds one.

Every module of this package is imported, so a new method is one new file with one decorator.
Methods outside the package load from the folders listed in $KDBENCH_PLUGINS (separated by ':'),
each .py file there imported once, e.g. a user's own method beside their matrices.
"""

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

from methods.base import Method, MethodContext, MethodError, Needs, warmup_factor
from methods.registry import (
    all_params,
    available,
    create,
    describe,
    method_class,
    needs,
    provenance,
    register_method,
    resolve_params,
    switches,
)

PLUGINS_ENV = "KDBENCH_PLUGINS"


def _import_package_modules() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def load_plugins(folders: list[str | os.PathLike]) -> list[str]:
    """Import each .py file of `folders` once; returns the names of the methods they added."""
    before = set(available())
    for folder in folders:
        for path in sorted(Path(folder).expanduser().glob("*.py")):
            name = f"kdbench_plugin_{path.stem}"
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return sorted(set(available()) - before)


_import_package_modules()
load_plugins([f for f in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if f])

__all__ = [
    "Method",
    "MethodContext",
    "MethodError",
    "Needs",
    "all_params",
    "available",
    "create",
    "describe",
    "load_plugins",
    "method_class",
    "needs",
    "provenance",
    "register_method",
    "resolve_params",
    "switches",
    "warmup_factor",
]
