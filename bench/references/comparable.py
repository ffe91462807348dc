"""One notion of "comparable": a run's resolved spec against a published row's own setup.

`differences` returns one reason per difference that can change the result; a published number
is diffed against ours only when it returns none. Differences that change rounding alone (memory
format, cuDNN's choice of algorithm) are disclosed in the protocol, not counted here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import methods
from bench.references.published import EPOCH_METRICS, Published, subset_parts
from bench.references.setups import PublishedSetup
from bench.spec import RunSpec
from bench.spec.schema import COSINE_ONLY, STEP_ONLY, dataset_facts

MIN_RUNS = 2  # a mean with no spread cannot be compared with anything


@dataclass(frozen=True)
class Ours:
    """What the store says of a cell beside its spec."""

    finished_runs: int
    teacher_top1: float | None = None  # as re-scored at load
    published_teacher_top1: float | None = None


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _same(ours, theirs) -> bool:
    if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
        return len(ours) == len(theirs) and all(map(_same, ours, theirs))
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours is theirs or ours == theirs
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)
    return ours == theirs


def _teacher_scores(ours: Ours) -> str:
    scored = "not re-scored" if ours.teacher_top1 is None else f"re-scored {ours.teacher_top1:.2f}"
    if ours.published_teacher_top1 is None:
        return f"({scored})"
    return f"({scored}, published {ours.published_teacher_top1:.2f})"


def _data(run: RunSpec, setup: PublishedSetup, *, augmentation: bool = True) -> list[str]:
    reasons = []
    if run.data.dataset != setup.dataset:
        reasons.append(f"dataset {run.data.dataset} ≠ {setup.dataset}")
    if run.data.is_subset:
        reasons.append(f"data subset ({', '.join(subset_parts(run.data))})")
    facts = dataset_facts(setup.dataset)
    published_resolution = facts.resolution if facts is not None else None
    if published_resolution is not None and run.data.resolution != published_resolution:
        reasons.append(f"resolution {run.data.resolution} px ≠ {published_resolution} px")
    if run.data.mean is not None:
        reasons.append("normalization mean/std set by hand ≠ the dataset's")
    if augmentation and run.data.augment != setup.augment:
        reasons.append(f"augmentation {'on' if run.data.augment else 'off'} ≠ "
                       f"{'on' if setup.augment else 'off'}")
    if run.data.pixel_pipeline != setup.pixels:
        reasons.append(
            f"pixels {run.data.pixel_pipeline} (backend {run.data.backend}) ≠ {setup.pixels}"
        )
    return reasons


def _recipe(run: RunSpec, setup: PublishedSetup) -> list[str]:
    theirs = setup.recipe_for(run.student)
    if theirs is None:
        return [f"the published recipe is not released (setup {setup.name})"]
    ours = dataclasses.asdict(run.recipe)
    unused: tuple[str, ...] = ("sync_bn",)  # what it changes is the per-device batch, below
    if ours["schedule"] == theirs["schedule"]:
        unused += STEP_ONLY if ours["schedule"] == "cosine" else COSINE_ONLY
    return [
        f"{key} {_text(ours[key])} ≠ {_text(theirs[key])}"
        for key in ours
        if key in theirs and key not in unused and not _same(ours[key], theirs[key])
    ]


def _method(run: RunSpec, row: Published, setup: PublishedSetup) -> list[str]:
    name = run.method.name
    if name not in setup.methods:
        return [f"{name}'s published parameters are not recorded (setup {setup.name})"]
    defaults = methods.all_params(name)
    theirs = dict(setup.methods[name] or {}) | row.method_identity[1] | row.params
    ours = defaults | run.method.params  # an added option left out of the key is its default
    reasons = [
        f"{name}.{key} {_text(ours.get(key, '—'))} ≠ {_text(value)}"
        for key, value in theirs.items()
        if not _same(ours.get(key), value)
    ]
    # a parameter the setup does not name was the method's default there
    reasons += [
        f"{name}.{key} {_text(value)} ≠ the published default {_text(defaults[key])}"
        for key, value in ours.items()
        if key not in theirs and key in defaults and not _same(value, defaults[key])
    ]
    return reasons


def _batchnorm(run: RunSpec, setup: PublishedSetup) -> list[str]:
    """Which images BatchNorm normalized together: the per-device batch (a model without
    BatchNorm does not depend on it)."""
    ours = run.batchnorm_batch
    if ours == "none":
        return []
    if setup.per_device_batch is None:
        return [f"per-device batch {ours} (BatchNorm) against an unknown published one "
                f"(setup {setup.name})"]
    if int(ours) != setup.per_device_batch:
        return [f"per-device batch {ours} ≠ {setup.per_device_batch} (BatchNorm statistics)"]
    return []


def _execution(run: RunSpec, setup: PublishedSetup) -> list[str]:
    reasons = []
    if run.execution.precision != setup.precision:
        reasons.append(f"precision {run.execution.precision} ≠ {setup.precision}")
    if run.execution.teacher_cache != setup.teacher_cache:
        reasons.append(
            f"teacher logits cached in {run.execution.teacher_cache} ≠ "
            f"{'computed each step' if setup.teacher_cache == 'none' else setup.teacher_cache}"
        )
    return reasons


def _teacher(run: RunSpec, setup: PublishedSetup, ours: Ours) -> list[str]:
    if run.teacher is None or setup.teacher != "published":
        return []
    if run.teacher.source == "trained":
        return [f"teacher self-trained {_teacher_scores(ours)}"]
    if run.teacher.source == "file":
        return [f"teacher from a local file, not the released one {_teacher_scores(ours)}"]
    return []


def _seeds(row: Published, ours: Ours) -> list[str]:
    n = ours.finished_runs
    runs = f"{n} finished run{'' if n == 1 else 's'}"
    if n < MIN_RUNS:
        return [f"seeds: {runs}; a mean needs at least {MIN_RUNS}"]
    if row.runs is not None and n < row.runs:
        return [f"seeds: {runs} < the published mean of {row.runs}"]
    return []


def _metric(run: RunSpec, row: Published, setup: PublishedSetup) -> list[str]:
    held_out = run.data.val_per_class
    if row.metric in EPOCH_METRICS:
        if held_out is not None:
            return [f"train split: {held_out} images per class held out for validation ≠ none"]
        return []
    if row.metric == "unknown":
        return ["metric unknown: the source does not say which epoch it reports"]
    if row.metric == "best_val":
        if held_out is None:
            return ["metric: the test top-1 at the best epoch on a validation split held out of "
                    "train; this cell holds out none (set data.val_per_class)"]
        if setup.val_per_class is None or held_out != setup.val_per_class:
            theirs = setup.val_per_class or "an unrecorded number of"
            return [f"validation split: {held_out} images per class ≠ {theirs}"]
        return []
    return [f"metric '{row.metric}' is not an epoch of a training run"]


def differences(run: RunSpec, row: Published, setup: PublishedSetup, ours: Ours) -> list[str]:
    """Every reason `run`'s cell cannot be diffed against `row` (empty: like for like)."""
    return [
        *setup.not_reproduced,
        *_data(run, setup),
        *_recipe(run, setup),
        *_batchnorm(run, setup),
        *_method(run, row, setup),
        *_execution(run, setup),
        *_teacher(run, setup, ours),
        *_seeds(row, ours),
        *_metric(run, row, setup),
    ]


def teacher_differences(run: RunSpec, setup: PublishedSetup, ours: Ours) -> list[str]:
    """Why our teacher's re-score is not the published teacher's accuracy ('' reasons: it is)."""
    reasons = _data(run, setup, augmentation=False)  # a re-score reads the test split only
    if run.teacher is not None and run.teacher.source != "published":
        what = "self-trained" if run.teacher.source == "trained" else "from a local file"
        reasons.append(f"teacher {what}: another file than the released one")
    return reasons
