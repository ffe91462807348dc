"""The typed pieces of a benchmark: recipe, data, teacher, method, execution, and the RunSpec
whose cell_key / run_key identify a result.

The dataset and backend names, and the facts the data checks read, come from their registries
(bench/data/datasets/, bench/data/backends/). Sections a user writes (recipe, data, synthetic)
are validated by `methods.params`, the one
validation system (pydantic, strict, unknown fields refused); their defaults sit beside them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

import model_zoo
from bench.data.backends.base import backend_aliases, backend_named, backends
from bench.data.datasets.base import ARRAYS, FOLDER, Dataset, dataset_named, datasets
from bench.data.datasets.synthetic import SyntheticConfig
from bench.errors import SpecError
from bench.spec.keys import short_hash
from methods.params import params_dataclass

# Bump when a fix changes results, so runs made before it are never silently reused.
PROTOCOL_VERSION = 1

Positive = Annotated[int, Field(ge=1)]


STEP_ONLY = ("milestones", "lr_decay")
COSINE_ONLY = ("schedule", "lr_min")


@params_dataclass
class Recipe:
    """SGD with step decay or cosine annealing; CIFAR-100 defaults (mdistiller's
    configs/cifar100 *.yaml)."""

    epochs: Positive = 240
    batch_size: Positive = 64
    lr: Annotated[float, Field(gt=0)] = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    nesterov: bool = False
    milestones: tuple[Positive, ...] = (150, 180, 210)
    lr_decay: Annotated[float, Field(gt=0)] = 0.1
    # step: x lr_decay after each milestone. cosine: torch's CosineAnnealingLR stepped once per
    # epoch down to 0 over `epochs` (milestones and lr_decay then unused), as timm and most
    # CIFAR-10 code bases train.
    schedule: Literal["step", "cosine"] = "step"
    lr_min: Annotated[float, Field(ge=0)] = 0.0  # cosine's floor (CosineAnnealingLR's eta_min)
    # Under DDP, BatchNorm normalizes with each rank's own batch statistics (torchvision's and
    # mdistiller's practice); true: SyncBatchNorm, statistics over the global batch (CUDA only).
    sync_bn: bool = False

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch `epoch` (1-based)."""
        if self.schedule == "cosine":
            cosine = (1 + math.cos(math.pi * (epoch - 1) / self.epochs)) / 2
            return self.lr_min + (self.lr - self.lr_min) * cosine
        return self.lr * self.lr_decay ** sum(1 for m in self.milestones if m < epoch)

    def identity(self) -> dict:
        """The fields a result depends on. The fields of the other schedule are left out, and a
        step-decay recipe is keyed as before schedules existed, so its old keys still hold."""
        fields = dataclasses.asdict(self)
        unused = STEP_ONLY if self.schedule == "cosine" else COSINE_ONLY
        if not self.sync_bn:  # added after the first keys: off, it leaves them as they were
            unused += ("sync_bn",)
        return {k: v for k, v in fields.items() if k not in unused}


CROP_FLIP_MAX_RESOLUTION = 64  # the CIFAR family (pad 4, crop, flip) serves small images
# RandomResizedCrop + flip: counter-based on prepared arrays up to 64 px, and the decoders'
# own at ImageNet's 224 px; sizes between are not served in this version
RRC_RESOLUTION = 224


def _listed(names: list[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _registered(names: Callable[[], list[str]]) -> AfterValidator:
    """A validator that accepts only the names registered at validation time (plugins too),
    refusing any other as a Literal would (one line naming the choices)."""

    def check(value: str) -> str:
        found = names()
        if value not in found:
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": _listed(found)})
        return value

    return AfterValidator(check)


def dataset_names() -> list[str]:
    return list(datasets())


def dataset_facts(name: str) -> Dataset | None:
    """A registered dataset's facts, or None."""
    return datasets().get(name)


def backend_names() -> list[str]:
    """Each backend's name, then its older names."""
    return [name for name, backend in backends().items() for name in (name, *backend.aliases)]


@params_dataclass
class DataSpec:
    dataset: Annotated[str, _registered(dataset_names)] = "cifar100"
    root: str | None = None
    # None: the dataset's default, the fastest backend that gives the exact batches
    backend: Annotated[str, _registered(backend_names)] | None = None
    subset_per_class: Positive | None = None
    test_subset_per_class: Positive | None = None
    # K train images per class held out for validation (chosen by a hash of the image index, the
    # same for every method, seed and backend); "best" is then the test top-1 of the epoch with
    # the best validation top-1. CIFAR-100 with K = 50: 45k train, 5k validation.
    val_per_class: Positive | None = None
    # true: the dataset's family (crop_flip up to 64 px, rrc_flip above); false: none
    augment: bool | Literal["crop_flip", "rrc_flip"] = True
    num_workers: Annotated[int, Field(ge=0)] = 0
    synthetic: SyntheticConfig | None = None  # for dataset "synthetic"; None: the defaults
    # Image folders: the side every image is served at (None: the dataset's). A crop_flip folder
    # is resized to it once, when prepared, never per step.
    resolution: Positive | None = None
    # Per-channel statistics on [0, 1] pixels; None: the dataset's (computed once from the train
    # split of an image folder and stored with its prepared arrays)
    mean: tuple[float, float, float] | None = None
    std: tuple[Annotated[float, Field(gt=0)], ...] | None = None

    def __post_init__(self) -> None:
        facts = dataset_named(self.dataset)
        object.__setattr__(self, "resolution", self.resolution or facts.resolution)
        if self.augment == self.default_family:  # spelled out or not: one cell
            object.__setattr__(self, "augment", True)
        backend = backend_aliases().get(self.backend, self.backend)
        default = "memory" if self.prepared_arrays else facts.default_backend
        object.__setattr__(self, "backend", backend or default)

    @property
    def facts(self) -> Dataset:
        """The dataset's declared facts (bench/data/datasets/)."""
        return dataset_named(self.dataset)

    @property
    def default_family(self) -> str:
        return self.facts.augment_family(self.resolution)

    @property
    def augment_family(self) -> str:
        """'crop_flip', 'rrc_flip' or 'none'."""
        if self.augment is False:
            return "none"
        return self.default_family if self.augment is True else self.augment

    @property
    def prepared_arrays(self) -> bool:
        """An image folder served as CIFAR-format arrays (resized once, at preparation)."""
        return self.facts.kind == FOLDER and self.resolution <= CROP_FLIP_MAX_RESOLUTION

    @property
    def serves_arrays(self) -> bool:
        """uint8 arrays in memory, augmented by the shared counter-based code: every backend is
        exact."""
        return self.facts.kind == ARRAYS or self.prepared_arrays

    @property
    def backends(self) -> tuple[str, ...]:
        kind = ARRAYS if self.serves_arrays else FOLDER
        if self.facts.backends is not None and not self.prepared_arrays:
            return self.facts.backends
        return tuple(name for name, backend in backends().items()
                     if (backend.serves_arrays if kind == ARRAYS else backend.serves_folders))

    @property
    def synthetic_config(self) -> SyntheticConfig:
        return self.synthetic or SyntheticConfig()

    @property
    def num_classes(self) -> int | None:
        """Known from the spec alone, or None (an image folder: counted from its class folders)."""
        return self.facts.classes(self)

    @property
    def is_subset(self) -> bool:
        return self.subset_per_class is not None or self.test_subset_per_class is not None

    @property
    def backends_exact(self) -> bool:
        return self.serves_arrays or self.facts.backends_exact

    @property
    def pixel_pipeline(self) -> str:
        """'exact' where all backends give the same batches, else this backend's pipeline."""
        return "exact" if self.backends_exact else backend_named(self.backend).pixel_pipeline

    def identity(self, content_hash: str | None) -> dict:
        """What of the data a result depends on (not where it lives, nor how it is loaded where
        every backend gives the same pixels)."""
        identity = {
            "dataset": self.dataset,
            "subset_per_class": self.subset_per_class,
            "test_subset_per_class": self.test_subset_per_class,
            "augment": self.augment,
            "content_hash": content_hash,
        }
        if self.resolution != self.facts.resolution:
            identity["resolution"] = self.resolution
        if self.mean is not None or self.std is not None:
            identity["normalization"] = [self.mean, self.std]
        if not self.backends_exact:
            identity["pixels"] = self.pixel_pipeline
        if self.val_per_class is not None:  # added later: absent, the keys are as before
            identity["val_per_class"] = self.val_per_class
        return identity


def check_data(data: DataSpec) -> None:
    """The one place that says which dataset is served at which size, how, by which backend."""
    fixed = not data.facts.resizable
    if fixed and data.resolution != data.facts.resolution:
        raise SpecError(
            f"data.resolution: {data.dataset} is served at {data.facts.resolution} px, not "
            f"{data.resolution}; a folder of other sizes is dataset: imagefolder"
        )
    if data.facts.kind == FOLDER and not data.prepared_arrays and (
        data.resolution != RRC_RESOLUTION
    ):
        raise SpecError(
            f"data.resolution: an image folder is served at up to {CROP_FLIP_MAX_RESOLUTION} px "
            f"(prepared once) or at {RRC_RESOLUTION} px in this version, not {data.resolution}"
        )
    if data.augment_family == "crop_flip" and data.resolution > CROP_FLIP_MAX_RESOLUTION:
        raise SpecError(
            f"data.augment: crop_flip pads by 4 px and is meant for images up to "
            f"{CROP_FLIP_MAX_RESOLUTION} px, not {data.resolution}; use rrc_flip"
        )
    if data.augment_family not in ("none", *data.facts.augment_families):
        raise SpecError(
            f"data.augment: {data.dataset} is trained with "
            f"{' or '.join(data.facts.augment_families)}, not {data.augment_family}"
        )
    if data.val_per_class is not None and not data.serves_arrays:
        raise SpecError(
            f"data.val_per_class: a validation split is held out of array datasets (CIFAR, "
            f"synthetic, folders up to {CROP_FLIP_MAX_RESOLUTION} px), not {data.dataset} at "
            f"{data.resolution} px"
        )
    if (data.mean is None) != (data.std is None) or (data.std and len(data.std) != 3):
        raise SpecError("data.mean and data.std: give both, three values each (RGB, on [0, 1])")
    check_backend(data)


def check_views(data: DataSpec, views: int) -> None:
    """Two views per image (a method's `needs.two_views`) are served where the counter-based
    augmentation runs on arrays, with augmentation on."""
    if views == 1:
        return
    if views != 2:
        raise SpecError(f"views: {views} views per image; served: 1 or 2")
    if not data.serves_arrays or data.augment_family == "none":
        where = "with data.augment off" if data.serves_arrays else f"at {data.resolution} px"
        raise SpecError(
            f"data: a two-view method needs a strong view, served for array datasets (CIFAR, "
            f"synthetic, folders up to {CROP_FLIP_MAX_RESOLUTION} px) with augmentation on, not "
            f"{data.dataset} {where}"
        )


def check_backend(data: DataSpec) -> None:
    """Which backend serves which dataset."""
    if data.backend not in data.backends:
        aliases = backend_named(data.backend).aliases
        alias = f" (also called {', '.join(map(repr, aliases))})" if aliases else ""
        raise SpecError(
            f"data.backend: '{data.backend}'{alias} cannot serve {data.dataset}"
            f"{'' if data.prepared_arrays else f' at {data.resolution} px'}; "
            f"valid for it: {', '.join(data.backends)}"
        )


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher is trained with CE (arch + recipe + seed), loaded from a file (sha256), or the
    authors' released file (`published`: fetched on first use, re-scored against its paper)."""

    arch: str
    recipe: Recipe
    seed: int = 0
    checkpoint: str | None = None
    # the file's sha256: a user's file (read when the spec is loaded), or a released file (bound
    # by the engine once fetched: two files under one release name are never one cell)
    checkpoint_sha256: str | None = None
    pretrained: str | None = None  # torchvision weights tag, e.g. IMAGENET1K_V1
    published: bool = False  # the released file of this dataset's published tables
    url: str | None = dataclasses.field(default=None, compare=False)  # a mirror of the release

    @property
    def trained_here(self) -> bool:
        return self.source == "trained"

    @property
    def source(self) -> str:
        """'published' (the authors' released weights), 'file' (a user's file) or 'trained'."""
        if self.checkpoint:
            return "file"
        if self.published or self.pretrained:
            return "published"
        return "trained"

    @property
    def bound(self) -> bool:
        """False for a released file not yet fetched: its sha256 is part of the identity."""
        return not (self.published and self.checkpoint_sha256 is None)

    def identity(self) -> dict:
        if self.checkpoint_sha256:
            return {"arch": self.arch, "sha256": self.checkpoint_sha256}
        if self.pretrained:
            return {"arch": self.arch, "pretrained": self.pretrained}
        if self.published:
            return {"arch": self.arch, "published": True}
        return {"arch": self.arch, "recipe": self.recipe.identity(), "seed": self.seed}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    params: dict = dataclasses.field(default_factory=dict)
    # How reports name the method, and what a reader must know; neither enters a key.
    title: str = dataclasses.field(default="", compare=False)
    note: str = dataclasses.field(default="", compare=False)
    provenance: str = dataclasses.field(default="", compare=False)  # paper, authors' code
    # the boolean parameters an ablation turns on or off (methods.switches), for the reports
    switches: tuple[str, ...] = dataclasses.field(default=(), compare=False)


@dataclass(frozen=True)
class Execution:
    """How a run is executed: part of run_key, not of cell_key."""

    device: str = "cpu"
    precision: str = "fp32"
    teacher_cache: str = "none"
    memory_format: str = "channels_last"  # faster on CPU (~1.3x for the CIFAR ResNets) and GPU
    # DDP ranks training the run (torchrun): each takes batch_size / world_size of every global
    # batch, with its own BatchNorm statistics, so a run on N ranks is another execution
    world_size: int = 1

    def identity(self) -> dict:
        fields = dataclasses.asdict(self)
        if self.world_size == 1:  # the single process keeps the keys it had before DDP
            del fields["world_size"]
        return fields


@dataclass(frozen=True)
class RunSpec:
    matrix: str
    data: DataSpec
    data_hash: str | None  # None until the engine (or a present dataset) binds it
    teacher: TeacherSpec | None
    student: str
    method: MethodSpec
    recipe: Recipe
    seed: int
    pairs: tuple[str, ...]
    execution: Execution = Execution()
    role: str = "student"  # or "teacher": a teacher's own CE training run

    def cell(self) -> dict:
        return {
            "protocol_version": PROTOCOL_VERSION,
            "role": self.role,
            "data": self.data.identity(self.data_hash),
            "teacher": self.teacher.identity() if self.teacher else None,
            "student": self.student,
            "method": {"name": self.method.name, "params": self.method.params},
            "recipe": self.recipe.identity(),
            "seed": self.seed,
        }

    @property
    def keyed(self) -> bool:
        return self.data_hash is not None and (self.teacher is None or self.teacher.bound)

    @property
    def cell_key(self) -> str:
        return short_hash(self.cell())

    @property
    def run_key(self) -> str:
        execution = self.execution.identity() | {"backend": self.data.backend}
        return short_hash({"cell": self.cell(), "execution": execution})

    @property
    def batchnorm_batch(self) -> str:
        return batchnorm_batch(
            self.student, self.recipe.batch_size, self.execution.world_size, self.recipe.sync_bn
        )

    @property
    def name(self) -> str:
        teacher = ""
        if self.teacher:
            of_seed = f"(t{self.teacher.seed})" if self.teacher.seed else ""
            teacher = f"{self.teacher.arch}{of_seed}->"
        return f"{teacher}{self.student} {self.method.label} seed{self.seed}"

    def flat_params(self) -> dict[str, Any]:
        """Every parameter of the run, flattened for the tracker."""
        out: dict[str, Any] = {
            "student": self.student,
            "teacher": self.teacher.arch if self.teacher else "none",
            "method": self.method.name,
            "method_label": self.method.label,
            "seed": self.seed,
            "protocol_version": PROTOCOL_VERSION,
            "data_hash": self.data_hash,
            "backend": self.data.backend,
            "device": self.execution.device,
            "precision": self.execution.precision,
            "teacher_cache": self.execution.teacher_cache,
            "memory_format": self.execution.memory_format,
            "world_size": self.execution.world_size,
            "rank_batch_size": self.recipe.batch_size // self.execution.world_size,
        }
        for k, v in dataclasses.asdict(self.data).items():
            out[f"data.{k}"] = v
        for k, v in dataclasses.asdict(self.recipe).items():
            out[f"recipe.{k}"] = v
        for k, v in self.method.params.items():
            out[f"method.{k}"] = v
        if self.teacher:
            out["teacher.seed"] = self.teacher.seed
            out["teacher.source"] = self.teacher.source
            out["teacher.checkpoint"] = (
                self.teacher.checkpoint or self.teacher.pretrained or self.teacher.source
            )
        return out


def batchnorm_batch(student: str, batch_size: int, world_size: int, sync_bn: bool) -> str:
    """How many images each BatchNorm layer of the student normalizes together in training: the
    per-device batch (the global batch with SyncBatchNorm), or 'none' for a model without
    BatchNorm. A model this process does not know (a plugin not loaded) counts as having it, so
    its runs are never pooled by mistake."""
    try:
        normalizes = model_zoo.has_batchnorm(student)
    except ValueError:
        normalizes = True
    if not normalizes:
        return "none"
    return str(batch_size if sync_bn else batch_size // max(world_size, 1))


def teacher_run(teacher: TeacherSpec, student_run: RunSpec) -> RunSpec:
    """The teacher's own training run: CE on the same data, with the teacher recipe and seed."""
    return dataclasses.replace(
        student_run,
        teacher=None,
        student=teacher.arch,
        method=MethodSpec("ce", "teacher", {}),
        recipe=teacher.recipe,
        seed=teacher.seed,
        pairs=(),
        role="teacher",
    )


@dataclass(frozen=True)
class Matrix:
    name: str
    description: str
    data: DataSpec
    recipe: Recipe
    teacher_recipe: Recipe
    runs: tuple[RunSpec, ...]
    teachers: tuple[TeacherSpec, ...]
    pairs: tuple[tuple[str, str], ...]
    method_labels: tuple[str, ...]
    seeds: tuple[int, ...]
    source: str
    baseline: str = "kd"  # the method label every other method is compared with
    teacher_seeds: tuple[int, ...] = (0,)  # several: each a teacher of its own, with its students

    @property
    def keyed(self) -> bool:
        return all(run.keyed for run in self.runs)

    def bind_data_hash(self, data_hash: str) -> Matrix:
        """The same matrix with the data content hash in every cell key."""
        runs = tuple(dataclasses.replace(run, data_hash=data_hash) for run in self.runs)
        return dataclasses.replace(self, runs=runs)

    def bind_teacher_files(self, sha256_by_arch: dict[str, str]) -> Matrix:
        """The same matrix with each released teacher's file hash in its students' keys."""

        def bound(teacher: TeacherSpec | None) -> TeacherSpec | None:
            if teacher is None or not teacher.published or teacher.arch not in sha256_by_arch:
                return teacher
            return dataclasses.replace(teacher, checkpoint_sha256=sha256_by_arch[teacher.arch])

        runs = tuple(dataclasses.replace(run, teacher=bound(run.teacher)) for run in self.runs)
        teachers = tuple(bound(t) for t in self.teachers)
        return dataclasses.replace(self, runs=runs, teachers=teachers)

    def on_ranks(self, world_size: int) -> Matrix:
        """The same matrix executed by `world_size` DDP ranks (another run_key when > 1)."""
        runs = tuple(
            dataclasses.replace(
                run, execution=dataclasses.replace(run.execution, world_size=world_size)
            )
            for run in self.runs
        )
        return dataclasses.replace(self, runs=runs)
