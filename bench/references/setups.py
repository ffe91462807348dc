"""The setups published numbers were made with (setups.yaml): recipe, method parameters,
precision, teacher source and pixel pipeline."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import lru_cache

from bench.errors import SpecError
from bench.references.files import EXTRA_FOLDER_VARIABLE, load_yaml_entries
from bench.spec import Recipe
from bench.vocabulary import PRECISIONS, TEACHER_SOURCES

# Recipe fields added after the setups were written: a setup that does not name one used this
RECIPE_FIELD_DEFAULTS = {"schedule": "step", "lr_min": 0.0, "sync_bn": False}


@dataclass(frozen=True)
class PublishedSetup:
    name: str
    source: str
    dataset: str
    recipe: dict | None  # None: the authors did not release it
    recipe_by_student: dict = field(default_factory=dict)
    # the images one BatchNorm layer normalized together (None: no source establishes it)
    per_device_batch: int | None = None
    per_device_batch_source: str = ""
    val_per_class: int | None = None  # train images per class held out for validation, if any
    methods: dict = field(default_factory=dict)
    precision: str = "fp32"
    teacher: str = "published"
    teacher_cache: str = "none"
    pixels: str = "exact"
    augment: bool = True
    metric_note: str = ""
    not_reproduced: tuple[str, ...] = ()

    def recipe_for(self, student: str) -> dict | None:
        if self.recipe is None:
            return None
        return self.recipe | self.recipe_by_student.get(student, {})


def _setup(name: str, raw: dict) -> PublishedSetup:
    known = {f.name for f in dataclasses.fields(PublishedSetup)} - {"name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(
            f"setups.yaml {name}.{unknown[0]}: unknown field; valid: {', '.join(sorted(known))}"
        )
    if "recipe" not in raw:
        raise SpecError(f"setups.yaml {name}.recipe: missing (null where it is not released)")
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)} - set(RECIPE_FIELD_DEFAULTS)
    missing = sorted(recipe_fields - set(raw["recipe"] or {}))
    if raw["recipe"] is not None and missing:
        raise SpecError(f"setups.yaml {name}.recipe: missing {', '.join(missing)}")
    if raw.get("precision", "fp32") not in PRECISIONS:
        raise SpecError(f"setups.yaml {name}.precision: expected one of {', '.join(PRECISIONS)}")
    if raw.get("teacher", "published") not in TEACHER_SOURCES:
        raise SpecError(
            f"setups.yaml {name}.teacher: expected one of {', '.join(TEACHER_SOURCES)}"
        )
    values = dict(raw)
    if values["recipe"] is not None:
        values["recipe"] = RECIPE_FIELD_DEFAULTS | values["recipe"]
    values["not_reproduced"] = tuple(values.get("not_reproduced") or ())
    return PublishedSetup(name=name, **values)


@lru_cache(maxsize=4)
def _cached(extra: str | None) -> dict[str, PublishedSetup]:
    return {name: _setup(name, raw) for name, raw in load_yaml_entries("setups.yaml").items()}


def load_setups() -> dict[str, PublishedSetup]:
    return _cached(os.environ.get(EXTRA_FOLDER_VARIABLE))
