"""The one cell loop: every way of running a matrix trains its cells through `run_cells`.

A process takes the first cell of the plan that no one else holds, trains it (its teacher
first, once), re-reads the plan and goes on until no cell is left. Alone on a plan (a plain
`bench run`, rank 0 of a torchrun group) it leaves a cell another process holds; as one of
several workers (`--workers`, a SLURM array task) it waits for it, since the holder may die and
its cell then has to be taken over, resuming from its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.engine.cells import (
    BLOCKED,
    Cell,
    CellFilter,
    MatrixSummary,
    finished_in_store,
    plan,
    runnable,
)
from bench.engine.distributed import Group, single
from bench.engine.execute import execute_run
from bench.engine.isolate import execute_isolated
from bench.engine.lifecycle import Outcome, RefusedResume
from bench.engine.stop import StopFlag
from bench.engine.teachers import TeacherFailed, TeacherInterrupted, prepare_teacher
from bench.engine.watch import CellWatcher
from bench.spec import Matrix, RunSpec, teacher_run
from bench.store.claims import Claims, ClaimsUnavailable
from bench.store.trackers import FAILED, FINISHED, KILLED


class _CellClaim:
    """A cell's claim, with its teacher's while this process prepares it."""

    def __init__(self, cell_claim, teacher_claim=None):
        self._cell, self._teacher = cell_claim, teacher_claim

    def release_teacher(self) -> None:
        if self._teacher is not None:
            self._teacher.release()
            self._teacher = None

    def release(self) -> None:
        self.release_teacher()
        self._cell.release()

    def held(self) -> bool:
        return self._cell.held()


@dataclass
class _CellLoop:
    matrix: Matrix
    tracker: object
    workdir: Path
    device: object
    claims: Claims
    stop: StopFlag
    cells: CellFilter | None
    retry_failed: bool
    alone: bool
    poll_seconds: float
    watcher: CellWatcher
    group: Group
    isolate: bool
    summary: MatrixSummary = field(default_factory=MatrixSummary)
    teachers: dict = field(default_factory=dict)  # spec -> LoadedTeacher or TeacherFailed
    attempted: set = field(default_factory=set)  # run keys met here: none is retried in a loop

    def run(self) -> MatrixSummary:
        todo: list[Cell] = []
        while not self.stop.requested:
            todo = self._todo()
            if not todo:
                break
            cell, claim = self._claim_next(todo)
            if cell is not None:
                self._train(cell.run, claim)
            elif not self.alone:  # every cell left (or its teacher) is held by another worker
                self.stop.wait(self.poll_seconds)
        if self.alone and self.stop.requested:  # the cells this process will not reach
            self.summary.interrupted += [c.run.name for c in todo
                                         if c.run.run_key not in self.attempted]
        return self.summary

    def _todo(self) -> list[Cell]:
        """The plan's cells left to train; a student of a teacher that failed here is blocked."""
        todo = []
        for cell in plan(self.matrix, self.tracker, self.workdir, self.cells):
            key, teacher = cell.run.run_key, self.teachers.get(cell.run.teacher)
            if key in self.attempted:
                continue
            if runnable(cell.state, self.retry_failed):
                todo.append(cell)
            elif cell.state == BLOCKED and isinstance(teacher, TeacherFailed):
                self._blocked(cell.run, teacher)
        return todo

    def _claim_next(self, todo: list[Cell]):
        """The first cell no one holds whose teacher this process has or may prepare. Among
        workers a teacher trained here is claimed by its run key like a cell, so across
        machines too it is trained once while its students wait and the others train other
        cells; alone, the teacher's own lock makes a second process wait for its file."""
        for cell in todo:
            run = cell.run
            claim = self.claims.try_claim(run.run_key)
            if claim is None:
                if self.alone:
                    self.watcher.log(f"{run.name}: claimed by another worker, skipped")
                    self.summary.claimed.append(run.name)
                    self.attempted.add(run.run_key)
                    self.watcher.done(run, "claimed")
                continue
            spec = run.teacher
            if self.alone or spec is None or spec in self.teachers or not spec.trained_here:
                return cell, _CellClaim(claim)
            teacher_claim = self.claims.try_claim(teacher_run(spec, run).run_key)
            if teacher_claim is not None:
                return cell, _CellClaim(claim, teacher_claim)
            claim.release()
        return None, None

    def _train(self, run: RunSpec, claim: _CellClaim) -> None:
        try:
            if finished_in_store(self.tracker, run):  # another process finished it since
                self.attempted.add(run.run_key)
                if self.alone:
                    self.summary.skipped.append(run.name)
                    self.watcher.done(run, FINISHED)
                return
            teacher = self._teacher(run, claim)
            self.attempted.add(run.run_key)
            if isinstance(teacher, TeacherFailed):
                self._blocked(run, teacher)
                return
            self.watcher.start(run)
            outcome = self._execute(run, teacher, claim)
            if outcome.status != FINISHED and not claim.held():  # fenced: see claims' docstring
                raise ClaimsUnavailable(
                    f"{run.name}: its claim was lost with the claims database's connection; the "
                    f"run stopped {outcome.status}"
                    + (", resumable at its last checkpoint" if outcome.status == KILLED else "")
                )
        except TeacherInterrupted as exc:
            self.watcher.log(f"{exc}; rerun the same command to resume")
            self.summary.interrupted.append(run.name)
            self.attempted.add(run.run_key)
            self.stop.requested = True
            return
        finally:
            claim.release()
        _record(outcome, run, self.summary, self.watcher.log)
        if outcome.status == KILLED:  # a stop agreed by a DDP group, maybe not asked here
            self.stop.requested = True
        self.watcher.done(run, outcome.status)

    def _teacher(self, run: RunSpec, claim: _CellClaim):
        spec = run.teacher
        if spec is None:
            return None
        if spec not in self.teachers:
            try:
                self.teachers[spec] = prepare_teacher(
                    spec, run, tracker=self.tracker, workdir=self.workdir, device=self.device,
                    log=self.watcher.log, stop_requested=lambda: self.stop.requested,
                    group=self.group,
                )
            except TeacherFailed as exc:
                self.teachers[spec] = exc
            claim.release_teacher()
        return self.teachers[spec]

    def _execute(self, run: RunSpec, teacher, claim: _CellClaim) -> Outcome:
        if self.isolate:
            return execute_isolated(run, tracker=self.tracker, workdir=self.workdir,
                                    device=self.device, stop=self.stop)
        watcher = self.watcher
        try:
            return execute_run(
                run, tracker=self.tracker, workdir=self.workdir, device=self.device,
                teacher=teacher,
                on_epoch_done=lambda epoch, metrics: watcher.epoch(run, epoch, metrics),
                on_progress=(lambda p: watcher.progress(run, p)) if watcher.wants_progress
                else None,
                stop_requested=lambda: self.stop.requested or not claim.held(),
                group=self.group,
            )
        except RefusedResume as exc:
            return Outcome(FAILED, None, {}, str(exc))

    def _blocked(self, run: RunSpec, teacher: TeacherFailed) -> None:
        self.summary.blocked.append((run.name, f"teacher failed: {teacher}"))
        self.attempted.add(run.run_key)
        self.watcher.done(run, BLOCKED)


def run_cells(
    matrix: Matrix,
    *,
    tracker,
    workdir: Path,
    device,
    claims: Claims,
    stop: StopFlag,
    cells: CellFilter | None = None,
    retry_failed: bool = False,
    alone: bool = True,
    poll_seconds: float = 2.0,
    watcher: CellWatcher | None = None,
    group: Group | None = None,
    isolate: bool = False,
) -> MatrixSummary:
    """Train the cells of `matrix` (bound to its data already) that this process can take, one
    after the other, and say what became of each. Under DDP this is rank 0 of the group that
    trains each run."""
    return _CellLoop(matrix, tracker, Path(workdir), device, claims, stop, cells, retry_failed,
                     alone, poll_seconds, watcher or CellWatcher(), group or single(),
                     isolate).run()


def _record(outcome: Outcome, run: RunSpec, summary: MatrixSummary, log) -> None:
    if outcome.resumed_from:
        log(
            f"{run.name}: resumed from the checkpoint of epoch {outcome.resumed_from - 1} "
            f"(run {outcome.run_id[:8]}, {outcome.epochs_trained} epochs trained now)"
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
