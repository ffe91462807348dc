"""A matrix becomes cells, cells become runs; finished cells are skipped, failures recorded."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from bench.engine import checkpoint
from bench.engine.binding import bind_data
from bench.engine.distributed import Group, single
from bench.engine.execute import Outcome, RefusedResume, checkpoint_path, execute_run
from bench.engine.published_teachers import fetch_published_teachers
from bench.engine.teachers import TeacherFailed, TeacherInterrupted, prepare_teacher
from bench.errors import SpecError
from bench.files import remove_orphan_temps
from bench.spec import Matrix, RunSpec, select, teacher_run
from bench.store.cell_state import BLOCKED, FAILED_STATE, FINISHED_STATE, cell_state
from bench.store.claims import Claims, ClaimsUnavailable, FileClaims
from bench.store.trackers import FAILED, FINISHED, KILLED, reconnect

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


class StopFlag:
    """SIGTERM/SIGINT: finish the current epoch, checkpoint, mark the run resumable, exit."""

    def __init__(self, event=None, parent: int | None = None):
        self._requested = False
        self._event = event  # a multiprocessing Event shared with a parent, if any
        self.child = None  # the isolated cell's process, which gets the signal passed on
        # the pid of a parent this process reports to: its death (even by SIGKILL, which runs no
        # handler) is a stop request, so an orphan leaves its run resumable
        self._parent = parent

    @property
    def requested(self) -> bool:
        return (
            self._requested
            or (self._event is not None and self._event.is_set())
            or self.orphaned
        )

    @property
    def orphaned(self) -> bool:
        return self._parent is not None and os.getppid() != self._parent

    @requested.setter
    def requested(self, value: bool) -> None:
        self._requested = value

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def __call__(self, signum, frame):
        self.requested = True
        if self.child is not None and self.child.pid:
            os.kill(self.child.pid, signal.SIGTERM)

    def install(self):
        previous = {s: signal.signal(s, self) for s in (signal.SIGTERM, signal.SIGINT)}
        return lambda: [signal.signal(s, h) for s, h in previous.items()]


def _isolated_child(run, teacher_spec, tracker_address, workdir, device, results) -> None:
    tracker = reconnect(tracker_address)
    device = torch.device(device)
    stop = StopFlag()
    stop.install()
    teacher = None
    try:
        if teacher_spec is not None:
            teacher = prepare_teacher(
                teacher_spec,
                run,
                tracker=tracker,
                workdir=workdir,
                device=device,
                log=lambda _: None,
                stop_requested=lambda: stop.requested,
            )
        outcome = execute_run(
            run,
            tracker=tracker,
            workdir=workdir,
            device=device,
            teacher=teacher,
            stop_requested=lambda: stop.requested,
        )
    except TeacherInterrupted as exc:
        outcome = Outcome(KILLED, None, {}, str(exc))
    except Exception as exc:  # reported to the parent, which records the cell as failed
        outcome = Outcome(FAILED, None, {}, f"{type(exc).__name__}: {exc}".splitlines()[0])
    results.put(outcome)


def _execute_isolated(run: RunSpec, *, tracker, workdir: Path, device, stop) -> Outcome:
    """The cell in a fresh process: a device error or leaked state cannot touch the next cell."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_isolated_child,
        args=(run, run.teacher, tracker.address(), Path(workdir), str(device), results),
    )
    child.start()
    stop.child = child
    try:
        while child.is_alive() or not results.empty():
            try:
                return results.get(timeout=1.0)
            except queue.Empty:
                continue
    finally:
        child.join()
        stop.child = None
    return Outcome(FAILED, None, {}, f"worker process died (exit code {child.exitcode})")


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


def run_matrix(
    matrix: Matrix,
    *,
    tracker,
    workdir: Path,
    device,
    retry_failed: bool = False,
    cells: CellFilter | None = None,
    isolate: bool = False,
    claims: Claims | None = None,
    log: Callable[[str], None] = tqdm.write,
    group: Group | None = None,
) -> MatrixSummary:
    """Train the matrix's cells one after the other in this process (under DDP, this being
    rank 0 of the group that trains each run)."""
    group = group or single()
    claims = claims or FileClaims(workdir)
    for folder in WRITTEN_FOLDERS:  # temp files of writers that died (the live ones are kept)
        remove_orphan_temps(Path(workdir) / folder)
    matrix = bind_data(matrix, workdir)
    cells = plan(matrix, tracker, workdir, cells)
    remove_finished_checkpoints(cells, workdir)
    runnable = {TO_RUN, RESUME} | ({FAILED_STATE, BLOCKED} if retry_failed else set())
    summary = settled(cells, retry_failed)
    todo = [c for c in cells if c.state in runnable]
    if not todo:
        log(
            f"matrix {matrix.name}: nothing to train, all {len(cells)} cells are done"
            if not summary.failed
            else f"matrix {matrix.name}: nothing to train"
        )
        return summary

    fetch_published_teachers(matrix, workdir, [c.run for c in todo])  # before any run starts
    stop = StopFlag()
    restore = stop.install()
    try:
        teachers = {}
        needed = {c.run.teacher for c in todo if c.run.teacher is not None}
        for spec in sorted(needed, key=lambda t: t.arch):
            template = next(c.run for c in todo if c.run.teacher == spec)
            try:
                teachers[spec] = prepare_teacher(
                    spec,
                    template,
                    tracker=tracker,
                    workdir=workdir,
                    device=device,
                    log=log,
                    stop_requested=lambda: stop.requested,
                    group=group,
                )
            except TeacherFailed as exc:
                teachers[spec] = exc
            except TeacherInterrupted as exc:
                log(f"{exc}; rerun the same command to resume")
                summary.interrupted += [c.run.name for c in todo]
                return summary
        bar = tqdm(
            total=len(todo), desc=matrix.name, unit="cell", dynamic_ncols=True, disable=None
        )  # no bars when stderr is not a terminal (CI logs)
        for cell in todo:
            run = cell.run
            bar.update(0)
            if stop.requested:
                summary.interrupted.append(run.name)
                continue
            teacher = teachers.get(run.teacher) if run.teacher else None
            if isinstance(teacher, TeacherFailed):
                summary.blocked.append((run.name, f"teacher failed: {teacher}"))
                bar.update(1)
                continue
            claim = claims.try_claim(run.run_key)
            if claim is None:
                log(f"{run.name}: claimed by another worker, skipped")
                summary.claimed.append(run.name)
                bar.update(1)
                continue
            if finished_in_store(tracker, run):  # another worker finished it since the plan
                claim.release()
                summary.skipped.append(run.name)
                bar.update(1)
                continue
            try:
                outcome = _execute_cell(
                    run,
                    teacher,
                    tracker=tracker,
                    workdir=workdir,
                    device=device,
                    stop=stop,
                    isolate=isolate,
                    group=group,
                )
            except RefusedResume as exc:
                summary.failed.append((run.name, str(exc)))
                bar.update(1)
                continue
            finally:
                claim.release()
            _record(outcome, run, summary, log)
            if outcome.status == KILLED:  # a stop agreed by a DDP group, maybe not asked here
                stop.requested = True
            bar.update(1)
        bar.close()
    finally:
        restore()
    return summary


def run_worker(
    matrix: Matrix,
    *,
    tracker,
    workdir: Path,
    device,
    claims: Claims,
    stop,
    retry_failed: bool = False,
    cells: CellFilter | None = None,
    poll_seconds: float = 2.0,
    on_event: Callable[[dict], None] = lambda event: None,
    log: Callable[[str], None] = tqdm.write,
    group: Group | None = None,
) -> MatrixSummary:
    """One of several workers on one matrix (bound to its data already): take the first cell of
    the plan no live worker holds, train it, re-read the plan, until no cell is left to train.
    Cells held by others are waited for (their holder may die: its claim is then free and its
    cell is taken over, resuming from its last checkpoint); a teacher is trained by the first
    worker that needs it while the others wait for it. Under DDP (a SLURM task of several
    ranks) this is rank 0, and the group trains each run."""
    group = group or single()
    summary = MatrixSummary()
    runnable = {TO_RUN, RESUME} | ({FAILED_STATE, BLOCKED} if retry_failed else set())
    teachers: dict = {}
    attempted: set[str] = set()  # cells this worker ran: a failure is not retried in a loop
    while not stop.requested:
        todo = [
            cell for cell in plan(matrix, tracker, workdir, cells)
            if cell.state in runnable and cell.run.run_key not in attempted
        ]  # fmt: skip
        if not todo:
            break
        cell, claim = _claim_next(todo, claims, teachers)
        if cell is None:  # every cell left (or its teacher) is held by another worker
            stop.wait(poll_seconds)
            continue
        run = cell.run
        try:
            if finished_in_store(tracker, run):
                continue
            teacher = None
            if run.teacher is not None:
                if run.teacher not in teachers:
                    teachers[run.teacher] = _teacher_for(run, tracker, workdir, device, stop, log,
                                                         group)  # fmt: skip
                    claim.release_teacher()
                teacher = teachers[run.teacher]
            attempted.add(run.run_key)
            if isinstance(teacher, TeacherFailed):
                summary.blocked.append((run.name, f"teacher failed: {teacher}"))
                on_event({"event": "done", "name": run.name, "status": BLOCKED})
                continue
            on_event({"event": "start", "name": run.name, "epochs": run.recipe.epochs})
            try:
                outcome = execute_run(
                    run, tracker=tracker, workdir=workdir, device=device, teacher=teacher,
                    on_epoch_done=lambda epoch, metrics, name=run.name: on_event(
                        {"event": "epoch", "name": name, "epoch": epoch,
                         "img_per_s": metrics["img_per_s"]}),
                    stop_requested=lambda held=claim.held: stop.requested or not held(),
                    group=group,
                )  # fmt: skip
            except RefusedResume as exc:
                outcome = Outcome(FAILED, None, {}, str(exc))
            if outcome.status != FINISHED and not claim.held():  # fenced: see claims' docstring
                raise ClaimsUnavailable(
                    f"{run.name}: its claim was lost with the claims database's connection; the "
                    f"run stopped {outcome.status}"
                    + (", resumable at its last checkpoint" if outcome.status == KILLED else "")
                )
        except TeacherInterrupted:
            summary.interrupted.append(run.name)
            break
        finally:
            claim.release()
        _record(outcome, run, summary, log)
        if outcome.status == KILLED:
            stop.requested = True
        on_event({"event": "done", "name": run.name, "status": outcome.status})
    return summary


class _CellClaim:
    """A cell's claim, with its teacher's while this worker prepares it."""

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


def _claim_next(todo: list[Cell], claims: Claims, teachers: dict):
    """The first cell no one holds whose teacher this worker has, or may prepare: a teacher
    trained here is claimed by its run key like a cell, so across machines too it is trained
    once (the others load its weights from the store) while its students wait; meanwhile the
    other workers take other cells."""
    for cell in todo:
        claim = claims.try_claim(cell.run.run_key)
        if claim is None:
            continue
        spec = cell.run.teacher
        if spec is None or spec in teachers or not spec.trained_here:
            return cell, _CellClaim(claim)
        teacher_claim = claims.try_claim(teacher_run(spec, cell.run).run_key)
        if teacher_claim is not None:
            return cell, _CellClaim(claim, teacher_claim)
        claim.release()
    return None, None


def _teacher_for(run: RunSpec, tracker, workdir, device, stop, log, group=None):
    try:
        return prepare_teacher(run.teacher, run, tracker=tracker, workdir=workdir, device=device,
                               log=log, stop_requested=lambda: stop.requested,
                               group=group)  # fmt: skip
    except TeacherFailed as exc:
        return exc


def _execute_cell(run, teacher, *, tracker, workdir, device, stop, isolate, group) -> Outcome:
    if isolate:
        return _execute_isolated(run, tracker=tracker, workdir=workdir, device=device, stop=stop)
    run_bar = tqdm(
        total=run.recipe.epochs,
        desc=run.name,
        unit="epoch",
        leave=False,
        dynamic_ncols=True,
        disable=None,
    )

    def on_progress(progress):
        run_bar.set_postfix_str(f"step {progress.step}/{progress.steps} loss {progress.loss:.3f}")

    def on_epoch(epoch, metrics):
        run_bar.n = epoch
        run_bar.set_postfix_str(
            f"loss {metrics['train/loss']:.3f} top1 {metrics['test/top1']:.1f} "
            f"{metrics['img_per_s']:.0f} img/s"
        )
        run_bar.refresh()

    try:
        return execute_run(
            run,
            tracker=tracker,
            workdir=workdir,
            device=device,
            teacher=teacher,
            on_epoch_done=on_epoch,
            on_progress=on_progress,
            stop_requested=lambda: stop.requested,
            group=group,
        )
    finally:
        run_bar.close()


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
