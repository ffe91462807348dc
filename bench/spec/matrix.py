"""A matrix YAML becomes validated, fully resolved RunSpecs: pairs x methods x seeds.

Expansion reads no data and touches no network: RunSpecs carry `data_hash=None` until the engine
binds the dataset's content hash (`Matrix.bind_data_hash`). Every error is one line naming the
field, the bad value and what was expected (SpecError, exit 2).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import re
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

import methods
import model_zoo
from bench.errors import SpecError
from bench.spec.keys import canonical
from bench.spec.schema import (
    DataSpec,
    Execution,
    Matrix,
    MethodSpec,
    Recipe,
    RunSpec,
    TeacherSpec,
    check_data,
    check_views,
)
from bench.vocabulary import PRECISIONS, TEACHER_CACHES, TEACHER_SOURCES
from methods.params import params_dataclass, validate

# fp32 is the default on every device: the published tables were trained in fp32, and a default
# that changes numerics would make every comparison with them a comparison of precisions. tf32
# (fp32 storage, TF32 matmul and convolutions on Ampere and later) and bf16 autocast are opt-in;
# runs of each precision are reported apart.
DEFAULT_PRECISION = "fp32"
PUBLISHED_PRETRAINED = "IMAGENET1K_V1"
DEFAULT_BASELINE = "kd"  # Hinton et al.: the method every logit-KD paper compares with


@params_dataclass
class TeacherSection:
    recipe: dict[str, Any] = field(default_factory=dict)  # over the matrix recipe
    seed: int = 0
    # several seeds: each trains a teacher of its own, with its own students (self-trained only)
    seeds: list[int] | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)  # model name -> file
    pretrained: str | None = None
    # published: the authors' released teachers of this dataset (bench/references/teachers.yaml)
    source: Literal[TEACHER_SOURCES] = "trained"
    url: str | None = None  # a mirror of the released file (file://, http://, https://)


@params_dataclass
class PairEntry:
    teacher: str
    student: str
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method or label -> values
    recipe: dict[str, Any] = field(default_factory=dict)  # over the matrix recipe
    label: str | None = None


@params_dataclass
class MethodEntry:
    name: str
    label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)  # parameter -> values, one cell each


@params_dataclass
class MatrixFile:
    name: str
    pairs: list[PairEntry]
    methods: list[MethodEntry]
    description: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> values
    seeds: Any = 1
    baseline: str | None = None  # the method label others are compared with; default kd


FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def check_file_name(value: str, where: str) -> None:
    """Matrix names and method labels name folders and files (reports/<matrix>/, a page per
    label): one safe file name each, never a path."""
    if not FILE_NAME.fullmatch(value):
        raise SpecError(
            f"{where}: {value!r} is not a safe file name; expected a letter or digit, then "
            "letters, digits and . _ + = - (no / or spaces)"
        )


def section(cls, values: Any, where: str):
    """`cls` validated from YAML values; a bad value is a one-line SpecError."""
    return validate(cls, values if values is not None else {}, where, make_error=SpecError)


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """YAML 1.2 numbers: `5e-4` is a float (YAML 1.1 would read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """' line N: <the parser's reason>', N the line of the construct that is wrong: the parser
    often notices the problem only on the line after it (its 'context' is the real place)."""
    mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark is not None else ""
    reason = " ".join(
        part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part
    )
    return f"{where}: not valid YAML ({reason or 'parse error'})"


def shipped_matrices() -> list[str]:
    folder = resources.files("bench.spec") / "matrices"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_matrix_yaml(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SpecError(f"matrix file not found: {name_or_path}")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"matrix file {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                f"offset {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise SpecError(f"matrix file {path}: cannot be read ({exc.strerror})") from None
    else:
        if name_or_path not in shipped_matrices():
            raise SpecError(
                f"unknown matrix '{name_or_path}'; valid: {', '.join(shipped_matrices())} "
                "(or a path to a .yaml file)"
            )
        text = (resources.files("bench.spec") / "matrices" / f"{name_or_path}.yaml").read_text()
        source = f"bench/spec/matrices/{name_or_path}.yaml"
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"matrix {source}{_yaml_problem(exc)}") from None
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
        try:
            node[parts[-1]] = parse_yaml(value)
        except yaml.YAMLError as exc:
            raise SpecError(f"--set '{item}'{_yaml_problem(exc)}") from None
    return raw


# ---------------------------------------------------------------- pieces


def parse_data(values: Any) -> DataSpec:
    data = section(DataSpec, values, "data.")
    check_data(data)
    return data


def _recipe(base: Recipe, values: dict, where: str) -> Recipe:
    return section(Recipe, dataclasses.asdict(base) | dict(values), where)


def _check_model(name: str, data: DataSpec, where: str) -> str:
    try:
        low, high = model_zoo.resolution_range(name)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
    if data.resolution < low or (high is not None and data.resolution > high):
        takes = f"{low} px and up" if high is None else f"{low} to {high} px"
        hint = " (ImageNet models carry a prefix: torchvision:, timm:, imagenet:)"
        raise SpecError(
            f"{where}: model '{name}' takes {takes} but {data.dataset} is served at "
            f"{data.resolution} px; pick a model for {data.resolution} px"
            + (hint if data.resolution > 64 else "")
        )
    return name


def _seeds(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"seeds: expected a positive count or a list, got {raw}")
        return tuple(range(raw))
    if isinstance(raw, list) and raw and all(type(s) is int for s in raw):
        if len(set(raw)) != len(raw):
            raise SpecError(f"seeds: duplicate seed in {raw}")
        return tuple(raw)
    raise SpecError(f"seeds: expected a positive count or a list of integers, got {raw!r}")


def _method_cells(entries: list[MethodEntry]) -> list[dict]:
    """One dict per method cell: name, label, params, where (grids expanded)."""
    cells = []
    for i, entry in enumerate(entries):
        where = f"methods[{i}]"
        if entry.name not in methods.available():
            raise SpecError(
                f"{where}.name: unknown method {entry.name!r}; "
                f"available: {', '.join(methods.available())}"
            )
        keys = sorted(entry.grid)
        for combo in itertools.product(*(entry.grid[k] for k in keys)):
            params = dict(entry.params) | dict(zip(keys, combo, strict=True))
            label = entry.label or entry.name
            if keys:
                label = (
                    label.format(**params)
                    if "{" in label
                    else label + "_" + "_".join(f"{k}{params[k]}" for k in keys)
                )
            cells.append({"name": entry.name, "label": label, "params": params, "where": where})
    labels = [c["label"] for c in cells]
    for cell in cells:
        check_file_name(cell["label"], f"{cell['where']}.label")
    duplicate = next((lab for lab in labels if labels.count(lab) > 1), None)
    if duplicate:
        raise SpecError(f"methods: label '{duplicate}' used twice; give each entry its own label")
    return cells


def _check_method_keys(keys, known: set[str], where: str) -> None:
    for key in keys:
        if key not in known:
            raise SpecError(
                f"{where}.{key}: not a method or label of this matrix; valid: "
                f"{', '.join(sorted(known))}"
            )


class _MethodResolver:
    """Method parameters resolved (defaults filled, validated) once per distinct input."""

    def __init__(self, num_classes: int | None):
        self.num_classes = num_classes
        self.done: dict[str, dict] = {}

    def __call__(self, name: str, params: dict, where: str) -> dict:
        key = repr((name, sorted(params.items(), key=lambda kv: kv[0])))
        if key not in self.done:
            try:
                resolved = methods.resolve_params(name, num_classes=self.num_classes, **params)
            except methods.MethodError as exc:
                raise SpecError(f"{where}: {exc}") from None
            self.done[key] = canonical(resolved)
        return self.done[key]


def _teacher_seeds(section_: TeacherSection) -> tuple[int, ...]:
    if section_.seeds is None:
        return (section_.seed,)
    if not section_.seeds or len(set(section_.seeds)) != len(section_.seeds):
        raise SpecError(f"teacher.seeds: expected distinct seeds, got {section_.seeds}")
    if section_.seed != 0:
        raise SpecError("teacher.seed and teacher.seeds: give one of them")
    fixed = section_.source == "published" or section_.checkpoints or section_.pretrained
    if fixed and len(section_.seeds) > 1:
        raise SpecError(
            "teacher.seeds: a released or given teacher is one file; several seeds need "
            "teachers trained here (teacher.source: trained)"
        )
    return tuple(section_.seeds)


def _teachers(section_: TeacherSection, archs: list[str], recipe: Recipe, data: DataSpec):
    if section_.pretrained is not None and section_.pretrained != PUBLISHED_PRETRAINED:
        raise SpecError(
            f"teacher.pretrained: '{section_.pretrained}' is not the published setting; "
            f"expected {PUBLISHED_PRETRAINED}"
        )
    unused = sorted(set(section_.checkpoints) - set(archs))
    if unused:
        raise SpecError(
            f"teacher.checkpoints.{unused[0]}: no pair has this teacher; "
            f"teachers of this matrix: {', '.join(sorted(set(archs)))}"
        )
    published = section_.source == "published"
    if published and section_.checkpoints:
        first = sorted(section_.checkpoints)[0]
        raise SpecError(
            f"teacher.checkpoints.{first}: a file of your own cannot be the published teacher; "
            "drop teacher.source: published or the checkpoints"
        )
    if section_.url is not None and not published:
        raise SpecError("teacher.url: a mirror of the released teachers needs source: published")
    pretrained = section_.pretrained
    if published and data.dataset == "imagenet":  # the released ImageNet teachers: torchvision's
        pretrained = PUBLISHED_PRETRAINED
    teachers = {}
    for arch in archs:
        checkpoint = section_.checkpoints.get(arch)
        sha = None
        if checkpoint:
            path = Path(checkpoint).expanduser()
            if not path.is_file():
                raise SpecError(f"teacher.checkpoints.{arch}: file not found: {checkpoint}")
            sha = model_zoo.sha256_file(path)
        teachers[arch] = tuple(
            TeacherSpec(
                arch,
                recipe,
                seed,
                checkpoint,
                sha,
                pretrained,
                published=published and pretrained is None,
                url=section_.url,
            )
            for seed in _teacher_seeds(section_)
        )
    return teachers


def _check_two_views(names: set[str], data: DataSpec, execution: Execution) -> None:
    for name in sorted(n for n in names if methods.needs(n).two_views):
        try:
            check_views(data, 2)
        except SpecError as error:
            raise SpecError(f"method {name!r}: {error}") from None
        if execution.teacher_cache != "none":
            raise SpecError(
                f"--teacher-cache: method {name!r} sees a strong view of every image, which the "
                "teacher-logit cache (crop-flip variants) does not hold; use --teacher-cache none"
            )


def _execution(device: str, precision: str | None, teacher_cache: str, data: DataSpec):
    precision = precision or DEFAULT_PRECISION
    if precision not in PRECISIONS:
        raise SpecError(f"--precision '{precision}': expected one of {', '.join(PRECISIONS)}")
    if precision == "tf32" and device != "cuda":
        raise SpecError(
            f"--precision tf32: TF32 is a CUDA mode (Ampere and later), not available on {device}; "
            "use fp32 or bf16"
        )
    if teacher_cache not in TEACHER_CACHES:
        raise SpecError(f"--teacher-cache '{teacher_cache}': expected none, float16 or float32")
    if teacher_cache != "none" and not (data.serves_arrays and data.augment_family != "rrc_flip"):
        raise SpecError(
            f"--teacher-cache: {data.dataset} at {data.resolution} px ({data.augment_family}) "
            "has no finite set of train variants; the cache is for crop-flip data"
        )
    return Execution(device=device, precision=precision, teacher_cache=teacher_cache)


# ---------------------------------------------------------------- the matrix


def load_matrix(
    name_or_path: str,
    *,
    overrides: list[str] | None = None,
    seeds: int | None = None,
    subset_per_class: int | None = None,
    device: str = "cpu",
    teacher_cache: str = "none",
    precision: str | None = None,
    data_hash: str | None = None,
) -> Matrix:
    """Read, override, validate and expand a matrix; `data_hash` binds the data's content hash."""
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
        data_hash=data_hash,
    )


def _pairs(spec: MatrixFile, data: DataSpec, known: set[str]) -> list[tuple[str, str, PairEntry]]:
    pairs: list[tuple[str, str, PairEntry]] = []
    for i, pair in enumerate(spec.pairs):
        where = f"pairs[{i}]"
        teacher = _check_model(pair.teacher, data, f"{where}.teacher")
        student = _check_model(pair.student, data, f"{where}.student")
        if any(t == teacher and s == student for t, s, _ in pairs):
            raise SpecError(f"{where}: duplicate pair {teacher} -> {student}")
        _check_method_keys(pair.params, known, f"{where}.params")
        pairs.append((teacher, student, pair))
    return pairs


def _cell_method(spec: MatrixFile, pair: PairEntry, cell: dict, pair_label: str,
                 resolve: _MethodResolver) -> MethodSpec:
    """A method entry on one pair, its parameters resolved: matrix-wide method defaults < the
    pair's per-method values < the entry's own (ablation) values < the pair's values for that
    exact label."""
    params = (
        dict(spec.method_params.get(cell["name"]) or {})
        | dict(pair.params.get(cell["name"]) or {})
        | dict(cell["params"])
    )
    if cell["label"] != cell["name"]:
        params |= dict(pair.params.get(cell["label"]) or {})
    where = f"{cell['where']} ({cell['label']}, pair {pair_label})"
    title, note = methods.describe(cell["name"])
    resolved = resolve(cell["name"], params, where)
    return MethodSpec(cell["name"], cell["label"], resolved, title, note,
                      methods.provenance(cell["name"]), tuple(methods.switches(cell["name"])))


def _add_run(runs: dict[str, RunSpec], run: RunSpec, pair_label: str) -> None:
    """A run added once by its key: ce is shared by the pairs with the same student and by
    every teacher seed, and lists each of those pairs."""
    if run.run_key in runs:
        prev = runs[run.run_key]
        if pair_label in prev.pairs:
            return
        run = dataclasses.replace(prev, pairs=prev.pairs + (pair_label,))
    runs[run.run_key] = run


def build_matrix(
    raw: dict,
    source: str,
    *,
    device: str = "cpu",
    teacher_cache: str = "none",
    precision: str | None = None,
    data_hash: str | None = None,
) -> Matrix:
    if isinstance(raw, dict) and isinstance(raw.get("methods"), list):
        entries = [{"name": m} if isinstance(m, str) else m for m in raw["methods"]]
        raw = raw | {"methods": entries}
    spec = section(MatrixFile, raw, "")
    check_file_name(spec.name, "name")
    if not spec.pairs or not spec.methods:
        raise SpecError(f"{'pairs' if not spec.pairs else 'methods'}: expected a non-empty list")
    data = parse_data(spec.data)
    recipe = _recipe(Recipe(), spec.recipe, "recipe.")
    teacher_recipe = _recipe(recipe, spec.teacher.recipe, "teacher.recipe.")
    seed_list = _seeds(spec.seeds)
    cells = _method_cells(spec.methods)
    known = {c["name"] for c in cells} | {c["label"] for c in cells}
    _check_method_keys(spec.method_params, {c["name"] for c in cells}, "method_params")
    if spec.baseline is not None and spec.baseline not in known:
        raise SpecError(
            f"baseline: '{spec.baseline}' is not a method label of this matrix; "
            f"valid: {', '.join(c['label'] for c in cells)}"
        )

    pairs = _pairs(spec, data, known)
    teachers = _teachers(spec.teacher, [t for t, _, _ in pairs], teacher_recipe, data)
    execution = _execution(device, precision, teacher_cache, data)
    _check_two_views({c["name"] for c in cells}, data, execution)
    runs: dict[str, RunSpec] = {}
    resolve = _MethodResolver(data.num_classes)
    for teacher_arch, student, pair in pairs:
        pair_label = f"{teacher_arch}:{student}"
        pair_recipe = _recipe(recipe, pair.recipe, f"pair {pair_label}.recipe.")
        for cell in cells:
            method = _cell_method(spec, pair, cell, pair_label, resolve)
            needs_teacher = methods.needs(cell["name"]).teacher
            for teacher, seed in itertools.product(teachers[teacher_arch], seed_list):
                run = RunSpec(matrix=spec.name, data=data, data_hash=data_hash,
                              teacher=teacher if needs_teacher else None, student=student,
                              method=method, recipe=pair_recipe, seed=seed, pairs=(pair_label,),
                              execution=execution)
                _add_run(runs, run, pair_label)
    used_teachers = {r.teacher for r in runs.values() if r.teacher}
    return Matrix(
        name=spec.name,
        description=spec.description,
        data=data,
        recipe=recipe,
        teacher_recipe=teacher_recipe,
        runs=tuple(runs.values()),
        teachers=tuple(t for group in teachers.values() for t in group if t in used_teachers),
        pairs=tuple((t, s) for t, s, _ in pairs),
        method_labels=tuple(c["label"] for c in cells),
        seeds=seed_list,
        source=source,
        baseline=spec.baseline or DEFAULT_BASELINE,
        teacher_seeds=_teacher_seeds(spec.teacher),
    )


def select(runs: tuple[RunSpec, ...], pattern: str) -> list[RunSpec]:
    """Runs whose name, cell_key or run_key matches a glob (for --print-spec)."""
    return [
        r
        for r in runs
        if fnmatch.fnmatch(r.name, pattern) or (r.keyed and pattern in (r.cell_key, r.run_key))
    ]
