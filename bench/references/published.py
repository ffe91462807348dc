"""Published numbers (published.csv): one row per (dataset, teacher, student, method).

Columns: top1/top5; `metric` (best, last, best_val, pretrained or unknown: which epoch the number
is; best_val: chosen on a validation split held out of train);
`runs` (how many runs the number is the mean of; empty where the source does not say); `std`
(their spread, where the source gives one); `setup` (the entry of setups.yaml the number was made
with); `params` (per-pair method parameters, `key=value;key=value`); `source`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import yaml

import methods
from bench.errors import SpecError
from bench.references.files import reference_files
from bench.spec import DataSpec

# kdbench dataset name -> the dataset column of published.csv
PUBLISHED_DATASETS = {
    "cifar100": "cifar100",
    "cifar10": "cifar10",
    "imagenet": "imagenet",
    "tinyimagenet": "tinyimagenet",
}
EPOCH_METRICS = ("last", "best")
# Published method names that are a kdbench method with some of its on/off options set. LS (Sun
# et al., CVPR 2024, Tables 1 and 3): "KD + ours" / "DKD + ours" are KD / DKD on standardized
# logits, kdbench's `standardize: true`.
PUBLISHED_VARIANTS: dict[str, tuple[str, dict]] = {
    "kd+ls": ("kd", {"standardize": True}),
    "dkd+ls": ("dkd", {"standardize": True}),
}
METRICS = (*EPOCH_METRICS, "best_val", "pretrained", "unknown")


@dataclass(frozen=True)
class Published:
    dataset: str
    teacher: str
    student: str
    method: str
    top1: float
    top5: float | None
    metric: str
    runs: int | None
    std: float | None
    setup: str
    source: str
    params: dict = field(default_factory=dict)

    @property
    def method_identity(self) -> tuple[str, dict]:
        """(kdbench method name, the on/off options the published method has set)."""
        name = self.method.casefold()
        return PUBLISHED_VARIANTS.get(name, (name, {}))

    @property
    def runs_text(self) -> str:
        if self.runs is None:
            return "runs not stated"
        return "1 run" if self.runs == 1 else f"mean of {self.runs}"


def _params(text: str, where: str) -> dict:
    params = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"{where}: params item '{item}': expected key=value")
        params[key.strip()] = yaml.safe_load(value)
    return params


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def load_published() -> list[Published]:
    """Every row of the shipped published.csv and of $KDBENCH_REFERENCES/published.csv."""
    rows: list[Published] = []
    for path in reference_files("published.csv"):
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                where = f"{path.name} line {line}"
                try:
                    row = {key: value or "" for key, value in row.items()}  # short rows
                    if row["metric"] not in METRICS:
                        raise ValueError(
                            f"metric {row['metric']!r}, expected one of {', '.join(METRICS)}"
                        )
                    runs = int(row["runs"]) if row["runs"].strip() else None
                    rows.append(
                        Published(
                            dataset=row["dataset"],
                            teacher=row["teacher"],
                            student=row["student"],
                            method=row["method"],
                            top1=float(row["top1"]),
                            top5=_number(row["top5"]),
                            metric=row["metric"],
                            runs=runs,
                            std=_number(row.get("std") or ""),
                            setup=row["setup"],
                            source=row["source"],
                            params=_params(row.get("params") or "", where),
                        )
                    )
                except (AttributeError, KeyError, TypeError, ValueError) as exc:
                    raise SpecError(f"{where}: not a valid published row ({exc})") from None
    return rows


def model_key(name: str) -> str:
    """A model name as published tables spell it, case-folded: 'torchvision:resnet34' ->
    'resnet34', 'imagenet:mobilenetv1' -> 'mobilenetv1' (matches 'MobileNetV1')."""
    return name.split(":", 1)[-1].casefold()


def on_off_options(name: str) -> dict[str, bool]:
    """A method's boolean parameters with their defaults (none for a method kdbench lacks)."""
    if name not in methods.available():
        return {}
    return {key: value for key, value in methods.all_params(name).items() if type(value) is bool}


def not_compared_reason(data: DataSpec) -> str:
    """Why no run on this data is compared with published numbers ('' when they may be)."""
    if data.dataset not in PUBLISHED_DATASETS:
        return (
            f"dataset '{data.dataset}' is generated or local data: its numbers are never compared "
            "with published numbers"
        )
    if data.is_subset:
        return (
            f"runs on a data subset ({', '.join(subset_parts(data))}): never compared with "
            "published numbers (those use the full train and test sets)"
        )
    return ""


def subset_parts(data: DataSpec) -> list[str]:
    return [
        f"{key}={getattr(data, key)}"
        for key in ("subset_per_class", "test_subset_per_class")
        if getattr(data, key) is not None
    ]


class PublishedTable:
    """Published rows indexed by (dataset, teacher, student, method), names matched loosely;
    a later row (from $KDBENCH_REFERENCES) replaces a shipped one with the same key."""

    def __init__(self, rows: list[Published]):
        self.rows = rows
        self._index = {self._key(r): r for r in rows}

    def find(self, dataset: str, teacher: str, student: str, method: str) -> Published | None:
        key = (
            PUBLISHED_DATASETS.get(dataset, dataset),
            model_key(teacher),
            model_key(student),
            method.casefold(),
        )
        return self._index.get(key)

    def find_method(
        self, dataset: str, teacher: str, student: str, name: str, params: dict
    ) -> Published | None:
        """The published row of this exact method: the same method name and the same value of
        every on/off option (an option a row does not set is the method's default). A cell's
        label plays no part: a `ce` cell labelled `kd` is not KD."""
        options = on_off_options(name)
        ours = {key: params.get(key, default) for key, default in options.items()}
        for row in reversed(self.for_pair(dataset, teacher, student)):
            row_name, row_options = row.method_identity
            if row_name == name and all(
                row_options.get(key, default) == ours[key] for key, default in options.items()
            ):
                return row
        return None

    def for_pair(self, dataset: str, teacher: str, student: str) -> list[Published]:
        key = (PUBLISHED_DATASETS.get(dataset, dataset), model_key(teacher), model_key(student))
        return [r for k, r in self._index.items() if k[:3] == key]

    def teacher_top1(self, dataset: str, teacher: str) -> Published | None:
        """The published accuracy of a teacher (the same file serves every pair it is in)."""
        folded = (PUBLISHED_DATASETS.get(dataset, dataset), model_key(teacher), "teacher")
        matching = [r for r in self.rows if self._key(r)[:2] + self._key(r)[3:] == folded]
        return matching[-1] if matching else None  # a later row ($KDBENCH_REFERENCES) wins

    @staticmethod
    def _key(r: Published) -> tuple[str, str, str, str]:
        return (r.dataset, model_key(r.teacher), model_key(r.student), r.method.casefold())
