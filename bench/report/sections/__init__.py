"""The sections of a report, one module each; a new section is one new file here.

A section is a function of the `ReportContext` returning blocks, registered with
`report_section(order)`; the report puts them in order. Every module of this package is imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.references import PublishedTable
from bench.report.collect import Results
from bench.report.render import Block
from bench.spec import Matrix


@dataclass
class ReportContext:
    matrix: Matrix
    results: Results
    metric: str  # the primary number: "last" or "best"
    published: PublishedTable
    tracker: Any
    out_dir: Path
    other_numerics: Counter = field(default_factory=Counter)  # runs left out: other numerics
    costs: Any = None  # a `bench perf --matrix` measurement (bench.report.costs.Costs), if any

    @property
    def baseline(self) -> str:
        return self.matrix.baseline


Section = Callable[[ReportContext], list[Block]]
_SECTIONS: list[tuple[int, str, Section]] = []


def report_section(order: int) -> Callable[[Section], Section]:
    def register(fn: Section) -> Section:
        _SECTIONS.append((order, fn.__module__, fn))
        return fn

    return register


def sections() -> list[Section]:
    return [fn for _, _, fn in sorted(_SECTIONS, key=lambda s: (s[0], s[1]))]


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
