"""A matrix's cells and their states: what the store holds of each, and which are left to run."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.engine import checkpoint
from bench.engine.lifecycle import checkpoint_path
from bench.errors import SpecError
from bench.spec import Matrix, RunSpec, select, teacher_run
from bench.store.cell_state import BLOCKED, FAILED_STATE, FINISHED_STATE, cell_state

# The folders a run writes into (their orphaned temp files are removed at every start).
WRITTEN_FOLDERS = ("checkpoints", "teachers", "weights", "specs", "teacher_cache", "ffcv")
# The runner's view of a cell: the store's state, plus whether a checkpoint waits to resume.
DONE, RESUME, TO_RUN = FINISHED_STATE, "resume", "to run"


@dataclass
class Cell:
    run: RunSpec
    state: str
    run_id: str | None = None
    reason: str = ""  # why a failed cell failed, as recorded


@dataclass
class MatrixSummary:
    """What a matrix run did, cell by cell (names, and reasons for the failed)."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[tuple[str, str]] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # workers that lost the store for good

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.blocked or self.unreachable else 0

    def merge(self, part: MatrixSummary) -> None:
        """Add another process's summary (a worker's) to this one."""
        for name in ("trained", "skipped", "failed", "blocked", "interrupted", "claimed",
                     "unreachable"):
            getattr(self, name).extend(getattr(part, name))

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in
                ("trained", "skipped", "failed", "blocked", "interrupted")}


@dataclass(frozen=True)
class CellFilter:
    """Which of the matrix's cells this invocation runs: `--shard I/N` and `--only GLOB`."""

    shard: tuple[int, int] | None = None
    only: str | None = None  # a glob on the run name, or a cell_key/run_key (as --print-spec)

    def __call__(self, run: RunSpec) -> bool:
        if self.only is not None and not select((run,), self.only):
            return False
        # by cell_key, so adding or removing other cells never moves a cell to another shard
        return self.shard is None or int(run.cell_key, 16) % self.shard[1] == self.shard[0]


def parse_cell_filter(shard: str | None, only: str | None = None) -> CellFilter | None:
    if not shard and only is None:
        return None
    if not shard:
        return CellFilter(None, only)
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise SpecError(f"--shard '{shard}': expected i/n, e.g. 0/2") from None
    if count < 1 or not 0 <= index < count:
        raise SpecError(f"--shard '{shard}': expected 0 <= i < n")
    return CellFilter((index, count), only)


def chosen(run: RunSpec, cells: CellFilter | None) -> bool:
    return cells is None or cells(run)


def _records_by_run_key(tracker) -> dict[str, list]:
    """One read of the store: every record, grouped by run_key."""
    records: dict[str, list] = defaultdict(list)
    for record in tracker.search():
        key = record.tags.get("run_key")
        if key:
            records[key].append(record)
    return records


def finished_in_store(tracker, run: RunSpec) -> bool:
    return cell_state(tracker.search(run_key=run.run_key)).state == DONE


def plan(matrix: Matrix, tracker, workdir: Path, cells: CellFilter | None = None) -> list[Cell]:
    """Each chosen cell with its state: the store's rule (`cell_state`) for this
    execution (run_key), and `resume` where a checkpoint of an unfinished run waits."""
    records = _records_by_run_key(tracker)
    planned = []
    for run in matrix.runs:
        if not chosen(run, cells):
            continue
        teacher_records = None
        if run.teacher is not None and run.teacher.trained_here:
            teacher_records = records.get(teacher_run(run.teacher, run).run_key, [])
        found = cell_state(records.get(run.run_key, []), teacher_records)
        run_id = found.record.run_id if found.record else None
        if found.state in (DONE, BLOCKED, FAILED_STATE):
            reason = f"epoch {found.epoch}: {found.reason}" if found.epoch else found.reason
            planned.append(Cell(run, found.state, run_id, reason))
        elif checkpoint_path(workdir, run).is_file():
            planned.append(Cell(run, RESUME, run_id))
        else:
            planned.append(Cell(run, TO_RUN))
    return planned


def remove_finished_checkpoints(planned: list[Cell], workdir: Path) -> None:
    """A checkpoint outliving its FINISHED run (its worker died between the two, or the cell
    was finished on another machine) is of no use: removed."""
    for cell in planned:
        path = checkpoint_path(workdir, cell.run)
        if cell.state == DONE and path.is_file():
            checkpoint.remove(path)


def settled(planned: list[Cell], retry_failed: bool) -> MatrixSummary:
    """The summary of the cells the plan leaves alone: finished ones, and failed or blocked ones
    unless retried (they count, so every way of running a matrix exits 1 on them)."""
    summary = MatrixSummary()
    for cell in planned:
        if cell.state == DONE:
            summary.skipped.append(cell.run.name)
        elif cell.state == BLOCKED and not retry_failed:
            summary.blocked.append((cell.run.name, "teacher failed (rerun with --retry-failed)"))
        elif cell.state == FAILED_STATE and not retry_failed:
            summary.failed.append((cell.run.name, cell.reason + " (rerun with --retry-failed)"))
    return summary




def runnable(state: str, retry_failed: bool) -> bool:
    """Whether a cell in `state` is trained: failed and blocked cells only when retried."""
    return state in (TO_RUN, RESUME) or (retry_failed and state in (FAILED_STATE, BLOCKED))
