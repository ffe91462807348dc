"""The matrix start-up every executor shares, and the `bench run` an executor is handed.

`start_matrix` is the one start-up: the claims checked, temp files of dead writers removed, the
data bound (read, generated or downloaded once, its hash in every key), the plan read from the
store, stale checkpoints removed, the cells left alone counted and the released teachers
fetched, all before any run starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.engine.binding import bind_data, bind_present_data
from bench.engine.cells import (
    WRITTEN_FOLDERS,
    Cell,
    CellFilter,
    MatrixSummary,
    chosen,
    plan,
    remove_finished_checkpoints,
    runnable,
    settled,
)
from bench.engine.published_teachers import fetch_published_teachers
from bench.files import remove_orphan_temps
from bench.launch.registry import Executor
from bench.spec import Matrix, RunSpec
from bench.store import trackers
from bench.store.claims import check_claims, describe_claims
from bench.store.trackers import describe_store


@dataclass
class Started:
    """A matrix ready to run: bound to its data, its plan, the cells to train and the summary
    of the cells left alone (finished; failed or blocked unless retried)."""

    matrix: Matrix
    planned: list[Cell]
    todo: list[Cell]
    summary: MatrixSummary


def start_matrix(matrix: Matrix, *, tracker, workdir: Path, cells: CellFilter | None = None,
                 retry_failed: bool = False, claims_uri: str | None = None) -> Started:
    workdir = Path(workdir)
    check_claims(workdir, claims_uri)  # a bad claims URI is one line before anything is done
    for folder in WRITTEN_FOLDERS:  # temp files of writers that died (the live ones are kept)
        remove_orphan_temps(workdir / folder)
    matrix = bind_data(matrix, workdir)
    planned = plan(matrix, tracker, workdir, cells)
    remove_finished_checkpoints(planned, workdir)
    todo = [cell for cell in planned if runnable(cell.state, retry_failed)]
    fetch_published_teachers(matrix, workdir, [cell.run for cell in todo])
    return Started(matrix, planned, todo, settled(planned, retry_failed))


@dataclass
class Launch:
    """One `bench run`: its options, the matrix as its executor runs it, the device, the work
    directory and the cells chosen (`--shard`, `--only`)."""

    args: argparse.Namespace
    executor: Executor
    matrix: Matrix
    device: torch.device
    workdir: Path
    cells: CellFilter | None

    @property
    def retry_failed(self) -> bool:
        return self.args.retry_failed

    def tracker(self):
        """The store, opened once the claims are known good (a bad URI opens nothing)."""
        check_claims(self.workdir, self.args.claims)
        return trackers.open_tracker(self.args.tracking, self.workdir)

    def start(self, tracker, matrix: Matrix | None = None) -> Started:
        return start_matrix(matrix or self.matrix, tracker=tracker, workdir=self.workdir,
                            cells=self.cells, retry_failed=self.retry_failed,
                            claims_uri=self.args.claims)

    def announce(self, tracker, how: str | None = None) -> None:
        print(f"kdbench: matrix {self.matrix.name} ({len(self.matrix.runs)} cells) "
              f"{how or f'on {self.device.type}'}; tracking {tracker.describe()}")

    def finish(self, summary: MatrixSummary) -> int:
        """Say what became of the cells; the exit code (130: interrupted, resumable)."""
        print(
            f"done: {len(summary.trained)} trained, {len(summary.skipped)} already finished, "
            f"{len(summary.failed)} failed, {len(summary.blocked)} blocked, "
            f"{len(summary.interrupted)} interrupted, {len(summary.claimed)} claimed elsewhere"
        )
        for name, reason in summary.failed + summary.blocked:
            print(f"  FAILED {name}: {reason}")
        if summary.unreachable:
            print(f"  {len(summary.unreachable)} worker(s) stopped: the tracking server did not "
                  "answer; every run is resumable: rerun the same command when it is back")
        if summary.interrupted:
            return 130
        return summary.exit_code

    def execution_line(self) -> str:
        """How the cells would execute: device, precision, data backend, store and claims."""
        execution = self.matrix.runs[0].execution
        return (
            f"execution: {self.executor.how(self.args)}; device {execution.device}, precision "
            f"{execution.precision}, memory {execution.memory_format}, teacher cache "
            f"{execution.teacher_cache}, data {self.matrix.data.dataset} via "
            f"{self.matrix.data.backend}; store {describe_store(self.args.tracking, self.workdir)}"
            f"; claims {describe_claims(self.workdir, self.args.claims)}"
        )

    def list_cells(self) -> int:
        """The dry run: each chosen cell and its state, read from the data already on disk (none
        is generated or downloaded) and the store."""
        print(self.execution_line())
        matrix, unkeyed_reason = bind_present_data(self.matrix, self.workdir)
        if unkeyed_reason:
            runs = [run for run in matrix.runs if chosen(run, self.cells)]
            for run in runs:
                print(f"{'to run':8}  {'(unkeyed)':16}  {run.name}")
            print(f"{len(runs)} cells: {len(runs)} to run; {_by_method(runs)}")
            print(f"cell keys not computed yet: {unkeyed_reason}")
            return 0
        planned = plan(matrix, self.tracker(), self.workdir, self.cells)
        for cell in planned:
            print(f"{cell.state:8}  {cell.run.cell_key}  {cell.run.name}")
        counts: dict[str, int] = {}
        for state in sorted(c.state for c in planned):
            counts[state] = counts.get(state, 0) + 1
        print(f"{len(planned)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items())
              + f"; {_by_method([c.run for c in planned])}")
        return 0


def _by_method(runs: list[RunSpec]) -> str:
    labels: dict[str, int] = {}
    for run in runs:
        labels[run.method.label] = labels.get(run.method.label, 0) + 1
    return ", ".join(f"{label} {n}" for label, n in labels.items())
