"""`bench run`: the cells one after the other in this process (each in a fresh child process
with `--isolate`), a bar for the matrix and one for the run in training."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from bench.engine.cells import CellFilter, MatrixSummary
from bench.engine.distributed import Group
from bench.engine.loop import run_cells
from bench.engine.stop import StopFlag
from bench.engine.watch import CellWatcher
from bench.launch.registry import Executor, register_executor
from bench.launch.start import Launch, start_matrix
from bench.spec import Matrix, RunSpec
from bench.store.claims import Claims, FileClaims


class _Bars(CellWatcher):
    """The matrix's bar and the running cell's (none when stderr is not a terminal: CI logs)."""

    wants_progress = True

    def __init__(self, total: int, name: str, log: Callable[[str], None]):
        self._log = log
        self.matrix_bar = tqdm(total=total, desc=name, unit="cell", dynamic_ncols=True,
                               disable=None)
        self.run_bar: tqdm | None = None

    def log(self, line: str) -> None:
        self._log(line)

    def start(self, run: RunSpec) -> None:
        self.run_bar = tqdm(total=run.recipe.epochs, desc=run.name, unit="epoch", leave=False,
                            dynamic_ncols=True, disable=None)

    def progress(self, run: RunSpec, progress) -> None:
        if self.run_bar is not None:
            self.run_bar.set_postfix_str(
                f"step {progress.step}/{progress.steps} loss {progress.loss:.3f}"
            )

    def epoch(self, run: RunSpec, epoch: int, metrics: dict[str, float]) -> None:
        if self.run_bar is not None:
            self.run_bar.n = epoch
            self.run_bar.set_postfix_str(
                f"loss {metrics['train/loss']:.3f} top1 {metrics['test/top1']:.1f} "
                f"{metrics['img_per_s']:.0f} img/s"
            )
            self.run_bar.refresh()

    def done(self, run: RunSpec, status: str) -> None:
        if self.run_bar is not None:
            self.run_bar.close()
            self.run_bar = None
        self.matrix_bar.update(1)

    def close(self) -> None:
        if self.run_bar is not None:
            self.run_bar.close()
        self.matrix_bar.close()


def run_in_process(
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
    started = start_matrix(matrix, tracker=tracker, workdir=workdir, cells=cells,
                           retry_failed=retry_failed)
    summary = started.summary
    if not started.todo:
        log(f"matrix {matrix.name}: nothing to train"
            + ("" if summary.failed else f", all {len(started.planned)} cells are done"))
        return summary
    stop = StopFlag()
    restore = stop.install()
    bars = _Bars(len(started.todo), matrix.name, log)
    try:
        summary.merge(run_cells(
            started.matrix, tracker=tracker, workdir=workdir, device=device,
            claims=claims or FileClaims(Path(workdir)), stop=stop, cells=cells,
            retry_failed=retry_failed, alone=True, watcher=bars, group=group, isolate=isolate,
        ))
    finally:
        bars.close()
        restore()
    return summary


@register_executor("process")
class InThisProcess(Executor):
    help = "this process, one cell after the other"
    order = 90  # what `--executor local` runs when no other option asks for more

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--isolate", action="store_true",
                           help="run each cell in its own process (for CUDA)")

    def wanted(self, args: argparse.Namespace) -> bool:
        return True

    def how(self, args: argparse.Namespace) -> str:
        return "this process"

    def run(self, launch: Launch) -> int:
        tracker = launch.tracker()
        launch.announce(tracker)
        return launch.finish(run_in_process(
            launch.matrix, tracker=tracker, workdir=launch.workdir, device=launch.device,
            retry_failed=launch.retry_failed, cells=launch.cells, isolate=launch.args.isolate,
        ))
