"""Model registry: one decorator to register, one factory to build, `list_models` to discover."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

PREFIXES = ("torchvision:", "timm:", "imagenet:")


class ModelError(ValueError):
    """An unknown model name or an option the model does not take."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    resolution: int
    entry: Callable[..., nn.Module]
    family: str
    pretrained: str | None = None  # torchvision weights tag, e.g. "IMAGENET1K_V1"


@dataclass(frozen=True)
class PrefixFamily:
    """A prefix whose names live in another library's registry (e.g. every timm model)."""

    prefix: str
    exists: Callable[[str], bool]
    build: Callable[..., nn.Module]
    resolution: Callable[[str], int]
    names: Callable[[str], list[str]]
    suggest: Callable[[str], list[str]]


_MODELS: dict[str, ModelInfo] = {}
_PREFIX_FAMILIES: dict[str, PrefixFamily] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    name: str | None = None,
    resolution: int = 32,
    pretrained: str | None = None,
) -> Any:
    """Register an entry point `fn(num_classes, ...) -> nn.Module` under its function name.

    Use as `@register_model` or `@register_model(resolution=224, name="imagenet:x")`.
    """

    def decorate(entry: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or entry.__name__
        if key in _MODELS:
            raise ModelError(f"model '{key}' is registered twice")
        family = entry.__module__.rsplit(".", 1)[-1]
        _MODELS[key] = ModelInfo(key, resolution, entry, family, pretrained)
        return entry

    return decorate(fn) if fn is not None else decorate


def register_prefix(family: PrefixFamily) -> None:
    if family.prefix in _PREFIX_FAMILIES:
        raise ModelError(f"model prefix '{family.prefix}' is registered twice")
    _PREFIX_FAMILIES[family.prefix] = family


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch pattern, sorted; `timm:<pattern>` asks timm."""
    for prefix, family in _PREFIX_FAMILIES.items():
        if pattern.startswith(prefix):
            return sorted(prefix + n for n in family.names(pattern[len(prefix) :]))
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry entry of a registered (non-prefix-family) model."""
    if name not in _MODELS:
        _raise_unknown(name)
    return _MODELS[name]


def resolution_range(name: str) -> tuple[int, int | None]:
    """The input sides a model takes (low, high; None: no upper bound). Every model ends in a
    global average pool: the CIFAR zoo (native 32 px) is used up to 64 px (Tiny-ImageNet), the
    ImageNet models (native 224 px) from 64 px up."""
    native = input_resolution(name)
    return (32, 64) if native == 32 else (64, None)


def input_resolution(name: str) -> int:
    """Input side length in pixels the model is defined for, without building it."""
    family, rest = _prefix_family(name)
    if family is not None:
        _check_prefix_name(family, rest)
        return family.resolution(rest)
    return model_info(name).resolution


def create(name: str, num_classes: int = 100, **kwargs: Any) -> nn.Module:
    """Build model `name` with a `num_classes` classifier; forward(x) returns logits only."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    if "pretrained" in kwargs:
        raise ModelError(
            f"model '{name}': pretrained weights are loaded with "
            "model_zoo.load_pretrained(name, model, weights_file), not create(pretrained=...)"
        )
    family, rest = _prefix_family(name)
    if family is not None:
        _check_prefix_name(family, rest)
        model = family.build(rest, num_classes=num_classes, **kwargs)
    else:
        info = model_info(name)
        _check_options(info, kwargs)
        model = info.entry(num_classes=num_classes, **kwargs)
    # Lets error messages (e.g. load_checkpoint's) name the model the user asked for.
    model.model_zoo_name = name
    return model


@functools.cache
def has_batchnorm(name: str) -> bool:
    """Whether the model normalizes with batch statistics in training, so that which images share
    a batch on a device changes its numbers."""
    model = create(name, num_classes=10)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _prefix_family(name: str) -> tuple[PrefixFamily | None, str]:
    for prefix, family in _PREFIX_FAMILIES.items():
        if name.startswith(prefix):
            return family, name[len(prefix) :]
    return None, name


def _check_prefix_name(family: PrefixFamily, rest: str) -> None:
    if rest and family.exists(rest):
        return
    hint = " or ".join(f"'{family.prefix}{s}'" for s in family.suggest(rest))
    hint = f" (did you mean {hint}?)" if hint else ""
    raise ModelError(
        f"unknown model '{family.prefix}{rest}'{hint} "
        f"(list them with model_zoo.list_models('{family.prefix}*') "
        "or python -m bench list models)"
    )


def _check_options(info: ModelInfo, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(info.entry).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p != "num_classes"]
    for key in kwargs:
        if key not in accepted:
            valid = ", ".join(accepted) if accepted else "none"
            raise ModelError(f"model '{info.name}' has no option {key!r}; valid options: {valid}")


def _raise_unknown(name: str) -> None:
    names = sorted(_MODELS)
    folded = name.lower().split(":")[-1]
    close = [n for n in names if n.lower().split(":")[-1] == folded]
    close += [n for n in difflib.get_close_matches(name, names, n=3) if n not in close]
    hint = f" (did you mean {' or '.join(repr(n) for n in close)}?)" if close else ""
    cifar = ", ".join(n for n in names if ":" not in n)
    imagenet = ", ".join([n for n in names if ":" in n] + [f"{p}<name>" for p in _PREFIX_FAMILIES])
    raise ModelError(
        f"unknown model {name!r}{hint}; CIFAR models (32 px, case-sensitive): {cifar}; "
        f"ImageNet models carry a prefix ({', '.join(PREFIXES)}): {imagenet} "
        "(see python -m bench list models)"
    )
