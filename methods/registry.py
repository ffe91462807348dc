"""Method registry: one decorator to register (with what the method needs), one factory to build,
`available` to discover. Parameters are validated once, by `methods.params`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from methods.base import ADDED_OPTION, Method, MethodError, Needs
from methods.params import params_dataclass, validate

_METHODS: dict[str, type[Method]] = {}
_NEEDS_TEACHER_ONLY = Needs()


def register_method(
    name: str, *, needs: Needs = _NEEDS_TEACHER_ONLY, title: str = "", note: str = ""
) -> Callable[[type[Method]], type[Method]]:
    """Register a Method subclass; its `Params` attribute is the frozen dataclass of defaults
    (with a `validate(num_classes)` method for checks across fields). `title` names the method
    with its source in reports; `note` says in one sentence what a reader must know about it."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise MethodError(f"method '{name}' is registered twice")
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise TypeError(f"method '{name}' needs a dataclass `Params` attribute")
        if "__pydantic_config__" not in cls.Params.__dict__:
            cls.Params = params_dataclass(cls.Params)
        cls.name = name
        cls.needs = needs
        cls.title = title or name
        cls.note = note
        _METHODS[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    return sorted(_METHODS)


def method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(available())}")
    return _METHODS[name]


def needs(name: str) -> Needs:
    return method_class(name).needs


def describe(name: str) -> tuple[str, str]:
    """(title, note) of a method, as reports and `bench list methods` show it."""
    cls = method_class(name)
    return cls.title, cls.note


def provenance(name: str) -> str:
    """The method's file docstring: its paper, and the authors' code it was matched against."""
    import sys

    module = sys.modules.get(method_class(name).__module__)
    return " ".join((module.__doc__ or "").split()) if module is not None else ""


def _build_params(name: str, num_classes: int | None, params: dict[str, Any]) -> Any:
    cls = method_class(name)
    if num_classes is not None and (type(num_classes) is not int or num_classes < 2):
        raise MethodError(f"num_classes={num_classes!r} must be an integer >= 2")
    resolved = validate(cls.Params, dict(params), f"{name}: ", make_error=MethodError)
    resolved.validate(num_classes)
    return resolved


def resolve_params(name: str, *, num_classes: int | None = None, **params: Any) -> dict[str, Any]:
    """Every parameter of `name` with defaults filled in, as plain JSON-able values (an added
    option at its default is left out: see `methods.base.added_option`)."""
    built = _build_params(name, num_classes, params)
    resolved = dataclasses.asdict(built)
    for f in dataclasses.fields(built):
        if f.metadata.get(ADDED_OPTION) and resolved[f.name] == f.default:
            del resolved[f.name]
    return resolved


def all_params(name: str) -> dict[str, Any]:
    """Every parameter of `name` at its default, added options included (for listings)."""
    return dataclasses.asdict(_build_params(name, None, {}))


def switches(name: str) -> list[str]:
    """The method's boolean parameters: the terms an ablation switches on or off."""
    fields = dataclasses.fields(method_class(name).Params)
    return [
        f.name for f in fields if f.type in (bool, "bool") and not f.metadata.get(ADDED_OPTION)
    ]


def create(name: str, *, num_classes: int | None = None, **params: Any) -> Method:
    """Build method `name`; unknown names, unknown parameters and bad values raise MethodError."""
    resolved = _build_params(name, num_classes, params)
    method = method_class(name)(resolved, num_classes=num_classes)
    if any(True for _ in method.parameters()) != method.needs.learnable:
        raise MethodError(
            f"method '{name}': needs.learnable={method.needs.learnable} but the module "
            f"{'has no' if method.needs.learnable else 'has'} parameters; declare what it needs"
        )
    return method
