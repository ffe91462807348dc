"""The cells of a matrix and the runs that stand for them, read once from the store."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from bench.report.stats import Summary, summarize
from bench.spec import Matrix, RunSpec, TeacherSpec, teacher_run
from bench.store.cell_state import FINISHED_STATE, cell_state
from bench.store.schema import numerics_of_record, numerics_of_run
from bench.store.trackers import RunRecord
from bench.vocabulary import METRICS

Unit = int | tuple[int | None, int]
# How each number was selected, named wherever it is shown: never two selections in one mean.
SELECTIONS = {
    "last": "last-epoch",
    "best": "best-epoch (best on test, as mdistiller)",
    "best_val": "best-on-validation (test top-1 at the best validation epoch)",
}
DONE = FINISHED_STATE


def other_metric(metric: str) -> str:
    return "best" if metric == "last" else "last"


def selection(metric: str) -> str:
    return SELECTIONS.get(metric, metric)


@dataclass
class CellResult:
    """A cell of the matrix and the run that stands for it (finished preferred), with its state."""

    run: RunSpec
    record: RunRecord | None
    state: str = ""
    reason: str = ""
    epoch: str = ""
    attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.state == DONE

    def value(self, metric: str) -> float | None:
        """The cell's final `metric` ('last' or 'best' top-1, or any final metric name)."""
        if not self.finished:
            return None
        key = f"{metric}_top1" if metric in METRICS else metric
        return self.record.metrics.get(key)


def _teacher_cell_key(teacher: TeacherSpec, run: RunSpec) -> str | None:
    """cell_key of the CE run that trains this run's teacher (None for file/pretrained ones)."""
    return teacher_run(teacher, run).cell_key if teacher.trained_here else None


def collect(matrix: Matrix, tracker, records: list[RunRecord] | None = None) -> list[CellResult]:
    """Every cell of the matrix with the run that stands for it and its state; runs are grouped
    by cell_key (the same cell run on another device or by another matrix counts), among the
    runs made with the matrix's numerics."""
    if records is None:
        records = tracker.search()
    wanted = {numerics_of_run(run) for run in matrix.runs}
    by_cell: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        key = record.tags.get("cell_key")
        # a student run made with other numerics (precision, cache dtype, memory format) is
        # another experiment: it never stands for this matrix's cell (teachers are shared)
        if key is None or (
            record.tags.get("role") != "teacher"
            and numerics_of_record(record) not in wanted
        ):
            continue
        by_cell[key].append(record)
    teacher_keys: dict[TeacherSpec, str | None] = {}
    results = []
    for run in matrix.runs:
        teacher_records = None
        if run.teacher is not None:
            if run.teacher not in teacher_keys:
                teacher_keys[run.teacher] = _teacher_cell_key(run.teacher, run)
            if teacher_keys[run.teacher] is not None:
                teacher_records = by_cell.get(teacher_keys[run.teacher], [])
        found = cell_state(
            by_cell.get(run.cell_key, []),
            teacher_records,
            run.teacher.arch if run.teacher else "",
        )
        results.append(
            CellResult(run, found.record, found.state, found.reason, found.epoch, found.attempts)
        )
    return results


def pair_label(teacher: str, student: str) -> str:
    return f"{teacher}:{student}"


def pair_title(teacher: str, student: str) -> str:
    return f"{teacher} → {student}"


class Results:
    """The collected cells indexed by (pair, method label)."""

    def __init__(self, matrix: Matrix, cells: list[CellResult]):
        self.matrix = matrix
        self.cells = cells
        self._index: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
        for cell in cells:
            for pair in cell.run.pairs:
                self._index[(pair, cell.run.method.label)].append(cell)

    def cells_of(self, pair: tuple[str, str], label: str) -> list[CellResult]:
        return self._index.get((pair_label(*pair), label), [])

    def unit(self, run: RunSpec) -> Unit:
        """What pairs runs across methods: the student seed, or (teacher seed, student seed) in
        a matrix of several teacher seeds (teacher seed None for a run without a teacher, which
        pairs with every teacher seed)."""
        if len(self.matrix.teacher_seeds) == 1:
            return run.seed
        return (run.teacher.seed if run.teacher else None, run.seed)

    def values(self, pair: tuple[str, str], label: str, metric: str) -> dict[Unit, float]:
        """Unit (seed, or teacher and student seed) -> final value of the finished runs of a
        (pair, method) cell."""
        out = {}
        for cell in self.cells_of(pair, label):
            value = cell.value(metric)
            if value is not None:
                out[self.unit(cell.run)] = value
        return out

    def summary(self, pair: tuple[str, str], label: str, metric: str) -> Summary:
        return summarize(list(self.values(pair, label, metric).values()))

    def row_values(self, pair: tuple[str, str], metric: str) -> dict[str, dict[int, float]]:
        return {label: self.values(pair, label, metric) for label in self.matrix.method_labels}

    def cells_of_label(self, label: str) -> list[CellResult]:
        return [c for c in self.cells if c.run.method.label == label]

    def method_name(self, label: str) -> str:
        return next(c.run.method.name for c in self.cells if c.run.method.label == label)

    def teacher_score(self, pair: tuple[str, str]) -> str | None:
        """The teacher's test top-1 as re-scored at load, logged with each of its students."""
        scores = set()
        for label in self.matrix.method_labels:
            for cell in self.cells_of(pair, label):
                if cell.record is not None and cell.run.teacher is not None:
                    score = cell.record.metrics.get("teacher_top1")
                    if score is not None:
                        scores.add(f"{score:.2f}")
        return "/".join(sorted(scores)) if scores else None

    @property
    def finished_records(self) -> list[RunRecord]:
        return [c.record for c in self.cells if c.state == DONE]

