"""What a cell loop tells whoever shows its progress (a terminal's bars, a worker's pipe, a SLURM
task's log). Light at import, so an executor in a plugin file can subclass it at its top."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.spec import RunSpec


class CellWatcher:
    """Each hook does nothing here; override the ones you show."""

    wants_progress = False  # per-step progress (a terminal's bar), not worth a pipe's traffic

    def log(self, line: str) -> None:
        print(line, flush=True)

    def start(self, run: RunSpec) -> None:
        pass

    def progress(self, run: RunSpec, progress) -> None:
        pass

    def epoch(self, run: RunSpec, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def done(self, run: RunSpec, status: str) -> None:
        """`status`: FINISHED, FAILED, KILLED, "blocked" or "claimed"."""
