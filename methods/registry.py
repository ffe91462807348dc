"""Method registry: one decorator to register, one factory to build, `available` to discover."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, Literal

from methods.base import Method, MethodError

_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Register a Method subclass; its `Params` attribute is the frozen dataclass of defaults."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise MethodError(f"method '{name}' is registered twice")
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise TypeError(f"method '{name}' needs a dataclass `Params` attribute")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    return sorted(_METHODS)


def _method_class(name: str) -> type[Method]:
    if name not in _METHODS:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(available())}")
    return _METHODS[name]


def _coerce(method: str, key: str, kind: Any, value: Any) -> Any:
    """Check one value against its field type and return it in canonical form."""
    where = f"{method}: {key}={value!r}"
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise MethodError(f"{where} must be one of {', '.join(map(repr, choices))}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise MethodError(f"{where} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MethodError(f"{where} must be an integer")
        return value
    if kind is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise MethodError(f"{where} must be a finite number")
        return float(value)
    raise TypeError(f"{method}: unsupported parameter type {kind!r} for {key}")


def _build_params(name: str, num_classes: int | None, params: dict[str, Any]) -> Any:
    cls = _method_class(name)
    if num_classes is not None and (type(num_classes) is not int or num_classes < 2):
        raise MethodError(f"num_classes={num_classes!r} must be an integer >= 2")
    fields = [f.name for f in dataclasses.fields(cls.Params)]
    for key in params:
        if key not in fields:
            valid = ", ".join(fields) if fields else "none"
            raise MethodError(f"unknown parameter {key!r} for method '{name}'; valid: {valid}")
    hints = typing.get_type_hints(cls.Params)
    values = {key: _coerce(name, key, hints[key], value) for key, value in params.items()}
    resolved = cls.Params(**values)
    resolved.validate(num_classes)
    return resolved


def resolve_params(name: str, *, num_classes: int | None = None, **params: Any) -> dict[str, Any]:
    """Every parameter of `name` with defaults filled in, as plain JSON-able values."""
    return dataclasses.asdict(_build_params(name, num_classes, params))


def create(name: str, *, num_classes: int | None = None, **params: Any) -> Method:
    """Build method `name`; unknown names, unknown parameters and bad values raise MethodError."""
    resolved = _build_params(name, num_classes, params)
    return _method_class(name)(resolved, num_classes=num_classes)
