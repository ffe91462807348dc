"""The leaderboard's data: the blocks (dataset × teacher→student pair) of every matrix reported,
their runs per method, and what a page needs to say how each number was made."""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.errors import SpecError
from bench.references import PublishedTable, load_published
from bench.report.collect import Results, collect
from bench.report.costs import Costs, load_costs
from bench.report.writer import load_report_matrix
from bench.spec import Matrix, read_matrix_yaml, shipped_matrices
from bench.spec.matrix import DEFAULT_BASELINE

SAME, DIFFERENT = "same architecture", "different architecture"


def stem(model: str) -> str:
    """The architecture family a model name spells: 'resnet32x4' -> 'resnet', 'wrn_40_2' -> 'wrn',
    'torchvision:resnet18' -> 'resnet', 'MobileNetV2' -> 'mobilenetv' (the DKD paper's split of
    its table into same- and different-architecture pairs)."""
    name = model.split(":", 1)[-1].casefold()
    return re.sub(r"[\d_x].*$", "", name) or name


def slug(text: str) -> str:
    """A file name that stays inside its folder, whatever a label or model is called."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("._") or "_"


@dataclass(frozen=True)
class Origin:
    """Where one number of a block comes from, and the command that trains that one cell."""

    run_name: str
    run_id: str
    matrix: str  # the shipped name or the file it was read from

    @property
    def command(self) -> str:
        return f"python -m bench run --matrix {shlex.quote(self.matrix)} --only " + shlex.quote(
            self.run_name
        )


@dataclass
class Block:
    dataset: str
    teacher: str
    student: str
    matrices: list[str] = field(default_factory=list)
    runs: dict[str, dict] = field(default_factory=dict)  # label -> unit -> value
    origins: dict[str, dict] = field(default_factory=lambda: defaultdict(dict))  # label -> unit
    speeds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    teacher_scores: set[str] = field(default_factory=set)
    teacher_shas: set[str] = field(default_factory=set)
    teacher_source: str = ""
    sources: list[tuple[Matrix, Results]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dataset}: {self.teacher} → {self.student}"

    @property
    def family(self) -> str:
        return SAME if stem(self.teacher) == stem(self.student) else DIFFERENT

    @property
    def page(self) -> str:
        return f"pairs/{slug(f'{self.dataset}-{self.teacher}-{self.student}')}.html"


@dataclass
class Board:
    metric: str
    blocks: list[Block]
    labels: list[str]  # methods, first seen first
    names: dict[str, str]  # label -> method name
    notes: dict[str, tuple[str, str, str]]  # label -> (title, note, provenance)
    params: dict[str, dict[str, dict]]  # label -> block key -> resolved parameters
    baseline: str
    reference: str | None  # the student trained alone ('ce'), where the store has it
    store: str
    published: PublishedTable
    costs: list[Costs] = field(default_factory=list)  # `bench perf --matrix` measurements
    tracker: Any = None  # the store, for the runs' per-epoch curves

    @property
    def cost_source(self) -> str:
        if self.costs:
            return "; ".join(c.source for c in self.costs)
        return (
            "each run's own last-epoch img/s (not a controlled measurement: whatever else ran "
            "on the machine counts in it; `python -m bench perf --matrix M` measures it)"
        )

    def runs(self, blocks: list[Block] | None = None) -> dict[str, dict[str, list[float]]]:
        return {
            b.key: {label: list(v.values()) for label, v in b.runs.items() if v}
            for b in (self.blocks if blocks is None else blocks)
        }

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(b.dataset for b in self.blocks))


def matrices_with_runs(records) -> list[str]:
    """The shipped matrices the store holds finished student runs of."""
    names = {r.tags.get("matrix") for r in records if r.status == "FINISHED"}
    return [m for m in shipped_matrices() if m in names]


def gather(matrix_names: list[str], tracker, records, metric: str, workdir=None) -> Board:
    blocks: dict[tuple, Block] = {}
    labels: list[str] = []
    names, notes, params = {}, {}, defaultdict(dict)
    alone: set[str] = set()  # labels of students trained without a teacher (ce)
    baseline, store = None, tracker.describe()
    for name in matrix_names:
        matrix = load_report_matrix(name, records, store=store)
        results = Results(matrix, collect(matrix, tracker, records))
        baseline = baseline or matrix.baseline
        for pair in matrix.pairs:
            key = (matrix.data.dataset, *pair)
            block = blocks.setdefault(key, Block(*key))
            block.matrices.append(matrix.name)
            block.sources.append((matrix, results))
            for label in matrix.method_labels:
                _add(block, results, pair, label, metric, name)
                cells = results.cells_of(pair, label)
                if cells:
                    method = cells[0].run.method
                    names[label] = method.name
                    notes[label] = (method.title, method.note, method.provenance)
                    params[label][block.key] = method.params
                    if cells[0].run.teacher is None:
                        alone.add(label)
                    if label not in labels:
                        labels.append(label)
    kept = [b for b in blocks.values() if any(b.runs.values())]
    costs = [c for name in matrix_names if (c := load_costs(workdir, _name_of(name))) is not None]
    if not kept:
        raise SpecError(
            f"no finished runs of {', '.join(matrix_names)} in {store}: nothing to rank"
        )
    return Board(
        metric,
        kept,
        labels,
        names,
        notes,
        dict(params),
        baseline or DEFAULT_BASELINE,
        next((label for label in labels if label in alone), None),
        store,
        PublishedTable(load_published()),
        costs,
        tracker,
    )


def _name_of(name_or_path: str) -> str:
    return str(read_matrix_yaml(name_or_path)[0].get("name"))


def _add(block: Block, results: Results, pair, label: str, metric: str, matrix: str) -> None:
    values = block.runs.setdefault(label, {})
    for cell in results.cells_of(pair, label):
        value = cell.value(metric)
        if value is None:
            continue
        unit = results.unit(cell.run)
        if unit in values:  # the same cell reported by two matrices
            continue
        values[unit] = value
        block.origins[label][unit] = Origin(cell.run.name, cell.record.run_id, matrix)
        speed = cell.value("img_per_s")
        if speed is not None:
            block.speeds[label].append(speed)
        if cell.run.teacher is not None:
            block.teacher_source = cell.run.teacher.source
            score = cell.record.metrics.get("teacher_top1")
            if score is not None:
                block.teacher_scores.add(f"{score:.2f}")
            sha = cell.record.tags.get("teacher_sha256")
            if sha:
                block.teacher_shas.add(sha)
