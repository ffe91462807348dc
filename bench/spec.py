"""Typed specs: a matrix YAML becomes validated, fully resolved RunSpecs with stable keys.

Every error names the field and what was expected, in one line (SpecError, exit 2).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench.errors import SpecError
from bench.keys import canonical, short_hash

# Bump when a fix changes results, so runs made before it are never silently reused.
PROTOCOL_VERSION = 1

DATASET_RESOLUTION = {"cifar100": 32, "synthetic": 32, "imagenet": 224, "imagefolder": 224}
BACKENDS = ("torch", "gpu", "ffcv")


@dataclass(frozen=True)
class Recipe:
    """SGD with step decay; CIFAR-100 defaults (mdistiller configs, RECIPES.md)."""

    epochs: int = 240
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    milestones: tuple[int, ...] = (150, 180, 210)
    lr_decay: float = 0.1

    def lr_at(self, epoch: int) -> float:
        """lr = base * decay^(number of milestones < epoch), epoch 1-based."""
        return self.lr * self.lr_decay ** sum(1 for m in self.milestones if m < epoch)


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "cifar100"
    root: str | None = None
    backend: str = "torch"
    subset_per_class: int | None = None
    test_subset_per_class: int | None = None
    augment: bool = True
    num_workers: int = 0
    synthetic: dict | None = None  # SyntheticConfig fields, for dataset "synthetic"

    @property
    def resolution(self) -> int:
        return DATASET_RESOLUTION[self.dataset]

    @property
    def is_subset(self) -> bool:
        return self.subset_per_class is not None or self.test_subset_per_class is not None

    def identity(self, content_hash: str) -> dict:
        """What of the data a result depends on (not where it lives, not how it is loaded)."""
        return {
            "dataset": self.dataset,
            "subset_per_class": self.subset_per_class,
            "test_subset_per_class": self.test_subset_per_class,
            "augment": self.augment,
            "content_hash": content_hash,
        }


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher is trained with CE (arch + recipe + seed) or loaded from a file (sha256)."""

    arch: str
    recipe: Recipe
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    pretrained: str | None = None  # torchvision weights tag, e.g. IMAGENET1K_V1

    def identity(self) -> dict:
        if self.pretrained and not self.checkpoint_sha256:
            return {"arch": self.arch, "pretrained": self.pretrained}
        if self.checkpoint_sha256:
            return {"arch": self.arch, "sha256": self.checkpoint_sha256}
        return {"arch": self.arch, "recipe": dataclasses.asdict(self.recipe), "seed": self.seed}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Execution:
    """How a run is executed: part of run_key, not of cell_key."""

    device: str = "cpu"
    precision: str = "fp32"
    teacher_cache: str = "none"
    memory_format: str = "channels_last"  # faster on CPU (~1.3x for the CIFAR ResNets) and GPU


@dataclass(frozen=True)
class RunSpec:
    matrix: str
    data: DataSpec
    data_hash: str
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
            "recipe": dataclasses.asdict(self.recipe),
            "seed": self.seed,
        }

    @property
    def cell_key(self) -> str:
        return short_hash(self.cell())

    @property
    def run_key(self) -> str:
        execution = dataclasses.asdict(self.execution) | {"backend": self.data.backend}
        return short_hash({"cell": self.cell(), "execution": execution})

    @property
    def name(self) -> str:
        teacher = f"{self.teacher.arch}->" if self.teacher else ""
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
        }
        for k, v in dataclasses.asdict(self.data).items():
            out[f"data.{k}"] = v
        for k, v in dataclasses.asdict(self.recipe).items():
            out[f"recipe.{k}"] = v
        for k, v in self.method.params.items():
            out[f"method.{k}"] = v
        if self.teacher:
            out["teacher.seed"] = self.teacher.seed
            out["teacher.checkpoint"] = self.teacher.checkpoint or "trained"
        return out


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


# ---------------------------------------------------------------- YAML loading and validation


MATRIX_KEYS = {
    "name",
    "description",
    "data",
    "recipe",
    "teacher",
    "pairs",
    "methods",
    "method_params",
    "seeds",
}
PAIR_KEYS = {"teacher", "student", "params", "recipe", "label"}
METHOD_KEYS = {"name", "label", "params", "grid"}
TEACHER_KEYS = {"recipe", "seed", "checkpoints", "pretrained"}


def shipped_matrices() -> list[str]:
    folder = resources.files("bench") / "matrices"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_matrix_yaml(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SpecError(f"matrix file not found: {name_or_path}")
        text, source = path.read_text(), str(path)
    else:
        if name_or_path not in shipped_matrices():
            raise SpecError(
                f"unknown matrix '{name_or_path}'; valid: {', '.join(shipped_matrices())} "
                "(or a path to a .yaml file)"
            )
        text = (resources.files("bench") / "matrices" / f"{name_or_path}.yaml").read_text()
        source = f"bench/matrices/{name_or_path}.yaml"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise SpecError(f"matrix {source}{where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise SpecError(f"matrix {source}: expected a mapping at the top level")
    return raw, source


def apply_overrides(raw: dict, assignments: list[str]) -> dict:
    """`--set recipe.epochs=2` style overrides on the raw matrix (values parsed as YAML)."""
    for item in assignments:
        if "=" not in item:
            raise SpecError(f"--set '{item}': expected dotted.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise SpecError(f"--set '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    if not isinstance(section, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field; valid: {', '.join(sorted(allowed))}")


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise SpecError(f"{where}: expected {kind.__name__}, got {value!r}")


def _build_dataclass(cls, values: dict, base, where: str):
    hints = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, set(hints), where)
    out = dataclasses.asdict(base) if base is not None else {}
    for key, value in values.items():
        default = getattr(base if base is not None else cls, key, None)
        out[key] = _coerce_field(cls, key, value, default, f"{where}.{key}")
    return cls(**out)


def _coerce_field(cls, key: str, value: Any, default: Any, where: str) -> Any:
    annotation = str(next(f.type for f in dataclasses.fields(cls) if f.name == key))
    if value is None and "None" in annotation:
        return None
    if annotation.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(_coerce(v, int, where) for v in value)
    if annotation.startswith("dict"):
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping, got {value!r}")
        return value
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if annotation.startswith(name):
            return _coerce(value, kind, where)
    return value


def _validate_recipe(recipe: Recipe, where: str) -> Recipe:
    if recipe.epochs < 1:
        raise SpecError(f"{where}.epochs: expected a positive integer, got {recipe.epochs}")
    if recipe.batch_size < 1:
        raise SpecError(f"{where}.batch_size: expected a positive integer, got {recipe.batch_size}")
    if recipe.lr <= 0:
        raise SpecError(f"{where}.lr: expected a positive number, got {recipe.lr}")
    if recipe.weight_decay < 0 or not 0 <= recipe.momentum < 1:
        raise SpecError(f"{where}: expected weight_decay >= 0 and 0 <= momentum < 1")
    if any(m < 1 for m in recipe.milestones):
        raise SpecError(
            f"{where}.milestones: expected positive epochs, got {list(recipe.milestones)}"
        )
    return recipe


def validate_data(data: DataSpec) -> DataSpec:
    if data.dataset not in DATASET_RESOLUTION:
        raise SpecError(
            f"data.dataset: unknown dataset '{data.dataset}'; "
            f"valid: {', '.join(DATASET_RESOLUTION)}"
        )
    if data.backend not in BACKENDS:
        raise SpecError(
            f"data.backend: unknown backend '{data.backend}'; valid: {', '.join(BACKENDS)}"
        )
    if data.backend == "gpu" and data.resolution != 32:
        raise SpecError(f"data.backend: 'gpu' holds CIFAR-size data only, not {data.dataset}")
    for key in ("subset_per_class", "test_subset_per_class"):
        value = getattr(data, key)
        if value is not None and value < 1:
            raise SpecError(f"data.{key}: expected a positive integer, got {value}")
    if data.dataset == "synthetic":
        from bench.data.synthetic import SyntheticConfig

        synthetic = data.synthetic or {}
        _build_dataclass(SyntheticConfig, synthetic, None, "data.synthetic")
        if int(synthetic.get("classes", SyntheticConfig.classes)) < 2:
            raise SpecError("data.synthetic.classes: expected at least 2 classes")
    return data


def _check_model(name: Any, dataset: DataSpec, where: str) -> str:
    import model_zoo

    if not isinstance(name, str):
        raise SpecError(f"{where}: expected a model name, got {name!r}")
    try:
        resolution = model_zoo.input_resolution(name)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
    if resolution != dataset.resolution:
        raise SpecError(
            f"{where}: model '{name}' takes {resolution}px input but {dataset.dataset} is "
            f"{dataset.resolution}px; pick a {dataset.resolution}px model"
            + (
                " (ImageNet models carry a prefix: torchvision:, timm:, imagenet:)"
                if dataset.resolution == 224
                else ""
            )
        )
    return name


def _method_entries(raw_methods: Any) -> list[dict]:
    if not isinstance(raw_methods, list) or not raw_methods:
        raise SpecError("methods: expected a non-empty list of method names or mappings")
    entries = []
    for i, item in enumerate(raw_methods):
        where = f"methods[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        _check_keys(item, METHOD_KEYS, where)
        if "name" not in item:
            raise SpecError(f"{where}.name: missing field")
        grid = item.get("grid") or {}
        if not isinstance(grid, dict):
            raise SpecError(f"{where}.grid: expected a mapping of parameter -> list of values")
        params = dict(item.get("params") or {})
        keys = sorted(grid)
        for combo in itertools.product(
            *(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)
        ):
            combo_params = params | dict(zip(keys, combo, strict=True))
            label = item.get("label") or item["name"]
            if keys:
                label = (
                    label.format(**combo_params)
                    if "{" in label
                    else (label + "_" + "_".join(f"{k}{combo_params[k]}" for k in keys))
                )
            entries.append(
                {"name": item["name"], "label": label, "params": combo_params, "where": where}
            )
    labels = [e["label"] for e in entries]
    duplicate = next((lab for lab in labels if labels.count(lab) > 1), None)
    if duplicate:
        raise SpecError(f"methods: label '{duplicate}' used twice; give each entry its own label")
    return entries


def resolve_method(name: str, params: dict, num_classes: int | None, where: str) -> dict:
    """Defaults filled in, numbers in the defaults' types, validated against the class count."""
    import methods

    try:
        defaults = methods.resolve_params(name)
        typed = {}
        for key, value in params.items():
            default = defaults.get(key)
            if (
                isinstance(default, float)
                and isinstance(value, (int, str))
                and not isinstance(value, bool)
            ):
                value = _coerce(value, float, f"{where}.params.{key}")
            typed[key] = value
        resolved = methods.resolve_params(name, **typed)
        methods.create(name, num_classes=num_classes, **typed)
    except methods.MethodError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return canonical(resolved)


def _seeds(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"seeds: expected a positive count or a list, got {raw}")
        return tuple(range(raw))
    if isinstance(raw, list) and raw and all(isinstance(s, int) for s in raw):
        if len(set(raw)) != len(raw):
            raise SpecError(f"seeds: duplicate seed in {raw}")
        return tuple(raw)
    raise SpecError(f"seeds: expected a positive count or a list of integers, got {raw!r}")


def _num_classes(data: DataSpec) -> int | None:
    if data.dataset == "cifar100":
        return 100
    if data.dataset == "imagenet":
        return 1000
    if data.dataset == "synthetic":
        return int((data.synthetic or {}).get("classes", 10))
    return None


def load_matrix(
    name_or_path: str,
    *,
    overrides: list[str] | None = None,
    seeds: int | None = None,
    subset_per_class: int | None = None,
    device: str = "cpu",
    teacher_cache: str = "none",
    precision: str | None = None,
    workdir: Path | None = None,
    data_hash: str | None = None,
) -> Matrix:
    """Read, override, validate and expand a matrix. `data_hash` skips reading the data."""
    raw, source = read_matrix_yaml(name_or_path)
    raw = apply_overrides(raw, list(overrides or []))
    if seeds is not None:
        raw["seeds"] = seeds
    if subset_per_class is not None:
        raw.setdefault("data", {})["subset_per_class"] = subset_per_class
    return build_matrix(
        raw,
        source,
        device=device,
        teacher_cache=teacher_cache,
        precision=precision,
        workdir=workdir,
        data_hash=data_hash,
    )


def build_matrix(
    raw: dict,
    source: str,
    *,
    device: str = "cpu",
    teacher_cache: str = "none",
    precision: str | None = None,
    workdir: Path | None = None,
    data_hash: str | None = None,
) -> Matrix:
    _check_keys(raw, MATRIX_KEYS, "matrix")
    for key in ("name", "pairs", "methods"):
        if key not in raw:
            raise SpecError(f"matrix.{key}: missing field")
    name = _coerce(raw["name"], str, "name")
    data = validate_data(_build_dataclass(DataSpec, raw.get("data") or {}, DataSpec(), "data"))
    recipe = _validate_recipe(
        _build_dataclass(Recipe, raw.get("recipe") or {}, Recipe(), "recipe"), "recipe"
    )
    teacher_raw = raw.get("teacher") or {}
    _check_keys(teacher_raw, TEACHER_KEYS, "teacher")
    teacher_recipe = _validate_recipe(
        _build_dataclass(Recipe, teacher_raw.get("recipe") or {}, recipe, "teacher.recipe"),
        "teacher.recipe",
    )
    teacher_seed = _coerce(teacher_raw.get("seed", 0), int, "teacher.seed")
    checkpoints = teacher_raw.get("checkpoints") or {}
    if not isinstance(checkpoints, dict):
        raise SpecError("teacher.checkpoints: expected a mapping of model name -> file")
    seed_list = _seeds(raw.get("seeds", 1))
    num_classes = _num_classes(data)
    method_entries = _method_entries(raw["methods"])
    method_params = raw.get("method_params") or {}
    if not isinstance(method_params, dict):
        raise SpecError("method_params: expected a mapping of method name -> parameters")

    if not isinstance(raw["pairs"], list) or not raw["pairs"]:
        raise SpecError("pairs: expected a non-empty list of {teacher, student}")
    pairs: list[tuple[str, str, dict]] = []
    for i, pair in enumerate(raw["pairs"]):
        where = f"pairs[{i}]"
        _check_keys(pair, PAIR_KEYS, where)
        for key in ("teacher", "student"):
            if key not in pair:
                raise SpecError(f"{where}.{key}: missing field")
        teacher = _check_model(pair["teacher"], data, f"{where}.teacher")
        student = _check_model(pair["student"], data, f"{where}.student")
        if any(t == teacher and s == student for t, s, _ in pairs):
            raise SpecError(f"{where}: duplicate pair {teacher} -> {student}")
        pairs.append((teacher, student, pair))

    if data_hash is None:
        from bench.data.datasets import dataset_hash
        from bench.workdir import resolve_workdir

        data_hash = dataset_hash(data, resolve_workdir(workdir))

    teachers: dict[str, TeacherSpec] = {}
    for teacher_arch, _, _ in pairs:
        if teacher_arch in teachers:
            continue
        checkpoint = checkpoints.get(teacher_arch)
        sha = None
        if checkpoint:
            from model_zoo import sha256_file

            if not Path(checkpoint).expanduser().is_file():
                raise SpecError(f"teacher.checkpoints.{teacher_arch}: file not found: {checkpoint}")
            sha = sha256_file(Path(checkpoint).expanduser())
        pretrained = teacher_raw.get("pretrained")
        if pretrained is not None and pretrained != "IMAGENET1K_V1":
            raise SpecError(
                f"teacher.pretrained: '{pretrained}' is not the published setting; "
                "expected IMAGENET1K_V1"
            )
        teachers[teacher_arch] = TeacherSpec(
            teacher_arch, teacher_recipe, teacher_seed, checkpoint, sha, pretrained
        )

    precision = precision or ("bf16" if device == "cuda" else "fp32")
    if precision not in ("fp32", "bf16"):
        raise SpecError(f"--precision '{precision}': expected fp32 or bf16")
    if teacher_cache not in ("none", "float16", "float32"):
        raise SpecError(f"--teacher-cache '{teacher_cache}': expected none, float16 or float32")
    if teacher_cache != "none" and data.resolution != 32:
        raise SpecError(
            f"--teacher-cache: {data.dataset} has no finite set of train variants; "
            "the cache is for CIFAR-size data"
        )
    execution = Execution(device=device, precision=precision, teacher_cache=teacher_cache)
    runs: dict[str, RunSpec] = {}
    for teacher_arch, student, pair in pairs:
        pair_label = f"{teacher_arch}:{student}"
        pair_params = pair.get("params") or {}
        if not isinstance(pair_params, dict):
            raise SpecError(f"pair {pair_label}.params: expected a mapping of method -> parameters")
        pair_recipe = _validate_recipe(
            _build_dataclass(Recipe, pair.get("recipe") or {}, recipe, f"pair {pair_label}.recipe"),
            f"pair {pair_label}.recipe",
        )
        for entry in method_entries:
            # matrix-wide method defaults < the pair's per-method values < the entry's own
            # (ablation) values < the pair's values for that exact label
            params = (
                dict(method_params.get(entry["name"]) or {})
                | dict(pair_params.get(entry["name"]) or {})
                | dict(entry["params"])
            )
            if entry["label"] != entry["name"]:
                params |= dict(pair_params.get(entry["label"]) or {})
            resolved = resolve_method(
                entry["name"],
                params,
                num_classes,
                f"{entry['where']} ({entry['label']}, pair {pair_label})",
            )
            method = MethodSpec(entry["name"], entry["label"], resolved)
            needs_teacher = entry["name"] != "ce"
            for seed in seed_list:
                run = RunSpec(
                    matrix=name,
                    data=data,
                    data_hash=data_hash,
                    teacher=teachers[teacher_arch] if needs_teacher else None,
                    student=student,
                    method=method,
                    recipe=pair_recipe,
                    seed=seed,
                    pairs=(pair_label,),
                    execution=execution,
                )
                if run.run_key in runs:  # ce shared by pairs with the same student
                    prev = runs[run.run_key]
                    run = dataclasses.replace(prev, pairs=prev.pairs + (pair_label,))
                runs[run.run_key] = run
    used_teachers = {r.teacher.arch for r in runs.values() if r.teacher}
    return Matrix(
        name=name,
        description=str(raw.get("description", "")),
        data=data,
        recipe=recipe,
        teacher_recipe=teacher_recipe,
        runs=tuple(runs.values()),
        teachers=tuple(t for a, t in teachers.items() if a in used_teachers),
        pairs=tuple((t, s) for t, s, _ in pairs),
        method_labels=tuple(e["label"] for e in method_entries),
        seeds=seed_list,
        source=source,
    )


def select(runs: tuple[RunSpec, ...], pattern: str) -> list[RunSpec]:
    """Runs whose name, cell_key or run_key matches a glob (for --print-spec)."""
    return [
        r for r in runs if fnmatch.fnmatch(r.name, pattern) or pattern in (r.cell_key, r.run_key)
    ]
