"""Published numbers (bench/references/published.csv) and the like-for-like comparison rules.

A published number is diffed against ours only when it is marked comparable ("yes") and its
metric says which epoch it is: "last" is compared with our last-epoch mean, "best" with our
best-epoch mean. "unknown" and "pretrained" numbers, and numbers marked "no: ...", are shown and
never diffed. Runs on data subsets or on generated data are never compared at all.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.spec import DataSpec

# kdbench dataset name -> the dataset column of published.csv
PUBLISHED_DATASETS = {"cifar100": "cifar100", "imagenet": "imagenet"}
DIFFED_METRICS = ("last", "best")


@dataclass(frozen=True)
class Published:
    dataset: str
    teacher: str
    student: str
    method: str
    top1: float
    top5: float | None
    metric: str
    runs: str
    comparable: str
    source: str

    @property
    def diffable(self) -> bool:
        return self.comparable == "yes" and self.metric in DIFFED_METRICS

    @property
    def why_not(self) -> str:
        """Why this number is shown but not diffed ('' when it is diffed)."""
        if self.comparable != "yes":
            return f"not comparable ({self.comparable.removeprefix('no:').strip()})"
        if self.metric not in DIFFED_METRICS:
            return f"epoch {self.metric}: not diffed"
        return ""


def default_path() -> Path:
    return Path(str(resources.files("bench") / "references" / "published.csv"))


def load_published(path: Path | None = None) -> list[Published]:
    with open(path or default_path(), newline="") as f:
        return [
            Published(
                dataset=row["dataset"],
                teacher=row["teacher"],
                student=row["student"],
                method=row["method"],
                top1=float(row["top1"]),
                top5=float(row["top5"]) if row["top5"] else None,
                metric=row["metric"],
                runs=row["runs"],
                comparable=row["comparable"],
                source=row["source"],
            )
            for row in csv.DictReader(f)
        ]


def model_key(name: str) -> str:
    """A model name as published tables spell it, case-folded: 'torchvision:resnet34' ->
    'resnet34', 'imagenet:mobilenetv1' -> 'mobilenetv1' (matches 'MobileNetV1')."""
    return name.split(":", 1)[-1].casefold()


def not_compared_reason(data: DataSpec) -> str:
    """Why these runs are never compared with published numbers ('' when they are)."""
    if data.dataset not in PUBLISHED_DATASETS:
        return (
            f"dataset '{data.dataset}' is generated or local data: its numbers are never compared "
            "with published numbers"
        )
    if data.is_subset:
        parts = [
            f"{key}={getattr(data, key)}"
            for key in ("subset_per_class", "test_subset_per_class")
            if getattr(data, key) is not None
        ]
        return (
            f"runs on a data subset ({', '.join(parts)}): never compared with published numbers "
            "(those use the full train and test sets)"
        )
    return ""


class PublishedTable:
    """Published rows indexed by (dataset, teacher, student, method), names matched loosely."""

    def __init__(self, rows: list[Published]):
        self.rows = rows
        self._index = {
            (r.dataset, model_key(r.teacher), model_key(r.student), r.method.casefold()): r
            for r in rows
        }

    def find(self, dataset: str, teacher: str, student: str, method: str) -> Published | None:
        key = (
            PUBLISHED_DATASETS.get(dataset, dataset),
            model_key(teacher),
            model_key(student),
            method.casefold(),
        )
        return self._index.get(key)

    def for_pair(self, dataset: str, teacher: str, student: str) -> list[Published]:
        key = (PUBLISHED_DATASETS.get(dataset, dataset), model_key(teacher), model_key(student))
        return [r for k, r in self._index.items() if k[:3] == key]
