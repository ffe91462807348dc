"""The state of a cell from the records of its runs: the one rule the runner and the report use.

The runner groups records by run_key (this execution of the cell), the report by cell_key (any
execution); both pass the records of the cell's teacher run when the teacher is trained here.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.store.trackers import FAILED, FINISHED, KILLED, RUNNING, RunRecord

FINISHED_STATE, FAILED_STATE, BLOCKED, UNFINISHED, MISSING = (
    "finished",
    "failed",
    "blocked",
    "unfinished",
    "missing",
)


@dataclass
class CellState:
    state: str
    record: RunRecord | None = None  # the run that stands for the cell
    reason: str = ""
    epoch: str = ""
    attempts: int = 0


def rank(record: RunRecord) -> int:
    """Which of several runs of one cell stands for it: finished, then unfinished, then failed."""
    if record.status == FINISHED and "last_top1" in record.metrics:
        return 0
    if record.status in (RUNNING, KILLED):
        return 1
    if record.status == FINISHED:
        return 2  # finished without final metrics: shown as unfinished
    return 3


def pick(records: list[RunRecord]) -> RunRecord | None:
    return min(records, key=rank) if records else None  # min is stable: the first of a rank


def failure(record: RunRecord) -> tuple[str, str]:
    """(reason, epoch) recorded with a failed run."""
    reason = record.tags.get("failure_reason", "") or f"status {record.status}"
    epoch = record.tags.get("failure_epoch", "")
    return reason, "" if epoch in ("", "None") else epoch


def cell_state(
    records: list[RunRecord],
    teacher_records: list[RunRecord] | None = None,
    teacher_arch: str = "",
) -> CellState:
    """The state of a cell; `teacher_records`: the runs that train the cell's teacher (None
    where no teacher is trained here)."""
    record = pick(records)
    attempts = len(records)
    if record is not None and rank(record) == 0:
        return CellState(FINISHED_STATE, record, attempts=attempts)
    teacher = pick(teacher_records) if teacher_records is not None else None
    if teacher is not None and teacher.status == FAILED:
        reason, epoch = failure(teacher)
        reason = f"teacher {teacher_arch} failed: {reason}"
        return CellState(BLOCKED, record, reason, epoch, attempts)
    if record is not None and record.status == FAILED:
        return CellState(FAILED_STATE, record, *failure(record), attempts)
    if record is not None:
        reason = (
            "finished without final metrics"
            if record.status == FINISHED
            else f"{record.status.lower()}: rerun the same command to resume"
        )
        return CellState(UNFINISHED, record, reason, attempts=attempts)
    if teacher_records is not None and teacher is None:
        return CellState(MISSING, None, f"not run (teacher {teacher_arch} not trained yet)")
    return CellState(MISSING, None, "not run")
