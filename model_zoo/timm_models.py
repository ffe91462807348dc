"""Any timm model as `timm:<name>`, always built without pretrained weights."""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from model_zoo.registry import PrefixFamily, register_prefix


def _exists(name: str) -> bool:
    import timm  # imported on first use: timm is slow to import

    return timm.is_model(name)


def _build(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    import timm

    # pretrained=False always: timm's default weight tags are not the published teachers.
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def _resolution(name: str) -> int:
    """timm's declared input size for the model (e.g. 384 for *_384 ViTs), else 224."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


def _names(pattern: str) -> list[str]:
    import timm

    return timm.list_models(pattern or "*")


def _suggest(name: str) -> list[str]:
    return difflib.get_close_matches(name, _names("*"), n=3)


register_prefix(
    PrefixFamily(
        prefix="timm:",
        exists=_exists,
        build=_build,
        resolution=_resolution,
        names=_names,
        suggest=_suggest,
    )
)
