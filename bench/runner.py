"""A matrix becomes cells, cells become runs; finished cells are skipped, failures recorded."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bench.errors import SpecError
from bench.execute import RefusedResume, checkpoint_path, execute_run
from bench.spec import Matrix, RunSpec
from bench.teachers import TeacherFailed, prepare_teacher
from bench.tracking import FAILED, FINISHED

DONE, RESUME, TO_RUN, FAILED_STATE, BLOCKED = "done", "resume", "to run", "failed", "blocked"


@dataclass
class Cell:
    run: RunSpec
    state: str
    run_id: str | None = None


@dataclass
class Summary:
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[tuple[str, str]] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.blocked else 0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise SpecError(f"--shard '{text}': expected i/n, e.g. 0/2") from None
    if count < 1 or not 0 <= index < count:
        raise SpecError(f"--shard '{text}': expected 0 <= i < n")
    return index, count


def in_shard(run: RunSpec, shard: tuple[int, int] | None) -> bool:
    # by cell_key, so adding or removing other cells never moves a cell to another shard
    return shard is None or int(run.cell_key, 16) % shard[1] == shard[0]


def plan(matrix: Matrix, tracker, workdir: Path, shard=None) -> list[Cell]:
    cells = []
    for run in matrix.runs:
        if not in_shard(run, shard):
            continue
        record = tracker.find(run.run_key)
        if record is not None and record.status == FINISHED:
            cells.append(Cell(run, DONE, record.run_id))
        elif checkpoint_path(workdir, run).is_file():
            cells.append(Cell(run, RESUME, record.run_id if record else None))
        elif record is not None and record.status == FAILED:
            cells.append(Cell(run, FAILED_STATE, record.run_id))
        else:
            cells.append(Cell(run, TO_RUN))
    return cells


class _StopFlag:
    """SIGTERM/SIGINT: finish the current epoch, checkpoint, mark the run resumable, exit."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True

    def install(self):
        previous = {s: signal.signal(s, self) for s in (signal.SIGTERM, signal.SIGINT)}
        return lambda: [signal.signal(s, h) for s, h in previous.items()]


def run_matrix(
    matrix: Matrix,
    *,
    tracker,
    workdir: Path,
    device,
    retry_failed: bool = False,
    shard=None,
    log: Callable[[str], None] = tqdm.write,
) -> Summary:
    summary = Summary()
    cells = plan(matrix, tracker, workdir, shard)
    runnable = {TO_RUN, RESUME} | ({FAILED_STATE} if retry_failed else set())
    for cell in cells:
        if cell.state == DONE:
            summary.skipped.append(cell.run.name)
        elif cell.state == FAILED_STATE and not retry_failed:
            record = tracker.find(cell.run.run_key)
            summary.failed.append(
                (
                    cell.run.name,
                    record.tags.get("failure_reason", "failed") + " (rerun with --retry-failed)",
                )
            )
    todo = [c for c in cells if c.state in runnable]
    if not todo:
        log(
            f"matrix {matrix.name}: nothing to train, all {len(cells)} cells are done"
            if not summary.failed
            else f"matrix {matrix.name}: nothing to train"
        )
        return summary

    stop = _StopFlag()
    restore = stop.install()
    try:
        teachers = {}
        needed = {c.run.teacher for c in todo if c.run.teacher is not None}
        for spec in sorted(needed, key=lambda t: t.arch):
            template = next(c.run for c in todo if c.run.teacher == spec)
            try:
                teachers[spec] = prepare_teacher(
                    spec, template, tracker=tracker, workdir=workdir, device=device, log=log
                )
            except TeacherFailed as exc:
                teachers[spec] = exc
        bar = tqdm(
            total=len(todo), desc=f"{matrix.name}", unit="cell", dynamic_ncols=True, disable=None
        )  # no bar when stderr is not a terminal (CI logs)
        for cell in todo:
            run = cell.run
            teacher = teachers.get(run.teacher) if run.teacher else None
            if isinstance(teacher, TeacherFailed):
                summary.blocked.append((run.name, f"teacher failed: {teacher}"))
                bar.update(1)
                continue
            if stop.requested:
                summary.interrupted.append(run.name)
                continue
            bar.set_postfix_str(run.name)

            def epoch_line(epoch, metrics, run=run):
                bar.set_postfix_str(
                    f"{run.name} ep {epoch}/{run.recipe.epochs} loss {metrics['train/loss']:.3f} "
                    f"top1 {metrics['test/top1']:.1f} {metrics['img_per_s']:.0f} img/s"
                )

            try:
                outcome = execute_run(
                    run,
                    tracker=tracker,
                    workdir=workdir,
                    device=device,
                    teacher=teacher,
                    on_epoch_done=epoch_line,
                    stop_requested=lambda: stop.requested,
                )
            except RefusedResume as exc:
                summary.failed.append((run.name, str(exc)))
                bar.update(1)
                continue
            if outcome.resumed_from:
                log(
                    f"{run.name}: resumed from epoch {outcome.resumed_from} "
                    f"(run {outcome.run_id[:8]})"
                )
            if outcome.status == FINISHED:
                summary.trained.append(run.name)
                log(
                    f"{run.name}: last top-1 {outcome.metrics['last_top1']:.2f}, "
                    f"best {outcome.metrics['best_top1']:.2f}"
                )
            elif outcome.status == FAILED:
                summary.failed.append((run.name, outcome.reason))
                log(f"{run.name}: FAILED ({outcome.reason})")
            else:
                summary.interrupted.append(run.name)
                log(f"{run.name}: interrupted; rerun the same command to resume")
            bar.update(1)
        bar.close()
    finally:
        restore()
    return summary
