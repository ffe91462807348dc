"""`bench status --matrix M`: where a matrix stands, whoever is running it, read from the store.

Per state counts; each running cell with its epoch, host and the age of its last heartbeat (a
run whose heartbeat is old may belong to a worker that died: the next worker takes it over);
each failed or blocked cell with its reason.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from tabulate import tabulate

from bench.report.collect import CellResult, collect
from bench.spec import Matrix
from bench.store.cell_state import BLOCKED, FAILED_STATE, FINISHED_STATE, MISSING, UNFINISHED
from bench.store.trackers import RUNNING, RunRecord

STATES = ("finished", "running", "resumable", "failed", "blocked", "not started")


@dataclass
class CellStatus:
    name: str
    state: str  # one of STATES
    epoch: str = ""
    epochs: int = 0
    host: str = ""
    heartbeat_age: float | None = None  # seconds since the run's last epoch or start
    reason: str = ""


def _state(cell: CellResult) -> str:
    if cell.state == FINISHED_STATE:
        return "finished"
    if cell.state == FAILED_STATE:
        return "failed"
    if cell.state == BLOCKED:
        return "blocked"
    if cell.state == UNFINISHED and cell.record is not None and cell.record.status == RUNNING:
        return "running"
    if cell.state == UNFINISHED:
        return "resumable"
    assert cell.state == MISSING, cell.state
    return "not started"


def matrix_status(matrix: Matrix, records: list[RunRecord], now: float | None = None):
    now = time.time() if now is None else now
    out = []
    for cell in collect(matrix, None, records):
        tags = cell.record.tags if cell.record else {}
        beat = tags.get("heartbeat")
        out.append(CellStatus(
            cell.run.name, _state(cell), tags.get("epoch", ""), cell.run.recipe.epochs,
            tags.get("host", ""), now - float(beat) if beat else None, cell.reason,
        ))
    return out


def format_status(matrix: Matrix, cells: list[CellStatus]) -> str:
    counts = Counter(c.state for c in cells)
    lines = [
        f"matrix {matrix.name}: {len(cells)} cells: "
        + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    ]
    running = [c for c in cells if c.state == "running"]
    if running:
        rows = [[c.name, f"{c.epoch or 0}/{c.epochs}", c.host or "?",
                 "?" if c.heartbeat_age is None else f"{c.heartbeat_age:.0f} s ago"]
                for c in running]
        lines += ["", "running:", tabulate(rows, ["cell", "epoch", "host", "last heartbeat"])]
    troubled = [c for c in cells if c.state in ("failed", "blocked")]
    if troubled:
        rows = [[c.name, c.state, c.reason] for c in troubled]
        lines += ["", "failed or blocked:", tabulate(rows, ["cell", "state", "reason"])]
    return "\n".join(lines)
