"""Loss methods for logit distillation: `create(name, **params)` builds one; see METHODS.md."""

from methods import cakd, ce, dkd, kd  # noqa: F401  (registers the methods)
from methods.base import Method, MethodError, warmup_factor
from methods.registry import available, create, register_method, resolve_params

__all__ = [
    "Method",
    "MethodError",
    "available",
    "create",
    "register_method",
    "resolve_params",
    "warmup_factor",
]
