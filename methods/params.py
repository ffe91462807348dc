"""Typed parameters: frozen pydantic dataclasses, validated strictly, errors as one line.

The one validation system of kdbench: method parameters here, and the matrix sections of
`bench.spec` (recipe, data, teacher) through the same `params_dataclass` and `validate`.
Values arrive as parsed YAML/JSON, so validation runs in JSON mode: a list fills a tuple, an
integer fills a float, and nothing else is converted ("4" is not a number, 1 is not true).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

T = TypeVar("T")

# Built in code, a dataclass converts as pydantic does by default (a dict fills a nested
# dataclass); values from a user go through `validate`, which is strict.
CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)

_EXPECTED = {
    "float_type": "must be a finite number",
    "finite_number": "must be a finite number",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


class ParamsError(ValueError):
    """A value that does not fit its field; the message is one line."""


def params_dataclass(cls: type[T]) -> type[T]:
    """A frozen dataclass whose fields are checked strictly (unknown fields are errors)."""
    return pydantic_dataclass(frozen=True, config=CONFIG)(cls)


def _describe(error: dict, where: str, valid: list[str]) -> str:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    value = error.get("input")
    kind = error["type"]
    section = where.rstrip(".: ")
    prefix = f"{section}: " if section else ""  # top-level fields need no section name
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{prefix}unknown field {path!r}; valid: {', '.join(valid) or 'none'}"
    if kind == "missing":
        return f"{prefix}missing field {path!r}"
    if kind == "literal_error":
        choices = error["ctx"]["expected"].replace(" or ", ", ")
        return f"{where}{path}={value!r} must be one of {choices}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"{where}{path}={value!r} must be {sign} {error['ctx'][key]}"
    expected = _EXPECTED.get(kind, error["msg"].lower().removeprefix("input should be "))
    return f"{where}{path}={value!r} {expected}"


def validate(
    cls: type[T],
    values: Any,
    where: str,
    *,
    make_error: Callable[[str], Exception] = ParamsError,
) -> T:
    """`cls` built from plain values; `where` prefixes the field name in the one-line error
    (e.g. "recipe." or "kd: ")."""
    if not isinstance(values, dict):
        raise make_error(f"{where.rstrip('.: ')}: expected a mapping, got {values!r}")
    try:
        text = json.dumps(values, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise make_error(f"{where.rstrip('.: ')}: {exc}") from None
    try:
        return TypeAdapter(cls).validate_json(text, strict=True)
    except ValidationError as exc:
        valid = list(getattr(cls, "__dataclass_fields__", {}))
        errors = exc.errors()
        raise make_error(_describe(_union_error(errors), where, valid)) from None


_TYPE_TAGS = ("bool", "int", "float", "str", "none")


def _member_tag(loc: tuple) -> bool:
    """Whether the last part of an error's path names a union member (pydantic appends `bool`,
    `literal['a','b']`, ...), not a field: errors of two fields are never one error."""
    return len(loc) > 1 and (loc[-1] in _TYPE_TAGS or not str(loc[-1]).isidentifier())


def _union_error(errors: list[dict]) -> dict:
    """A value that fits no member of a union (`bool | Literal[...]`) gets one error naming
    every choice, at the field's own path (pydantic reports one error per member)."""
    first = errors[0]
    members = [e for e in errors if e["loc"][:-1] == first["loc"][:-1] and _member_tag(e["loc"])]
    if len(members) < 2 or not any(e["type"] == "literal_error" for e in members):
        return first
    choices = []
    for error in members:
        if error["type"] == "bool_type":
            choices += ["true", "false"]
        elif error["type"] == "literal_error":
            choices.append(error["ctx"]["expected"])
    return first | {
        "loc": first["loc"][:-1],
        "type": "literal_error",
        "ctx": {"expected": ", ".join(choices)},
    }
