"""A test-only executor loaded through $KDBENCH_PLUGINS, as a user's own (Ray, a Kubernetes Job)
would be: `bench run --executor journal --journal FILE` takes the matrix through the shared
start-up, trains its cells in this process through the shared cell loop, and appends a line per
cell to FILE as each one ends. No file but this one names it."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.engine.watch import CellWatcher
from bench.errors import SpecError
from bench.launch.registry import Executor, register_executor


class _Journal(CellWatcher):
    def __init__(self, path: Path):
        self.path = path

    def done(self, run, status: str) -> None:
        with self.path.open("a") as journal:
            journal.write(f"{status}\t{run.name}\t{run.run_key}\n")


@register_executor("journal")
class JournalExecutor(Executor):
    help = "this process, a line per ended cell in --journal FILE (a test plugin)"

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--journal", metavar="FILE", help="where each ended cell is written")

    def check(self, args: argparse.Namespace) -> None:
        if args.journal is None:
            raise SpecError("--executor journal: expected --journal FILE")

    def how(self, args: argparse.Namespace) -> str:
        return f"this process, journal {args.journal}"

    def run(self, launch) -> int:
        from bench.engine.loop import run_cells  # the engine, only once a matrix runs
        from bench.engine.stop import StopFlag
        from bench.store.claims import open_claims

        tracker = launch.tracker()
        launch.announce(tracker, self.how(launch.args))
        started = launch.start(tracker)
        stop = StopFlag()
        restore = stop.install()
        try:
            started.summary.merge(run_cells(
                started.matrix, tracker=tracker, workdir=launch.workdir, device=launch.device,
                claims=open_claims(launch.workdir, launch.args.claims), stop=stop,
                cells=launch.cells, retry_failed=launch.retry_failed,
                watcher=_Journal(Path(launch.args.journal)),
            ))
        finally:
            restore()
        return launch.finish(started.summary)
