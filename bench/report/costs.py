"""Controlled cost measurements (`python -m bench perf --matrix M`): every method's full training
step timed on every pair of a matrix in one process, kept in the work directory with the device's
name; the report's cost table and the leaderboard read them from there."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.files import atomic_write_text, within


@dataclass(frozen=True)
class Costs:
    matrix: str
    device: str
    measured: str  # what was timed: batch, precision, steps
    speeds: dict[str, dict[str, float]]  # pair ("teacher:student") -> label -> img/s
    threads: int | None = None  # torch's CPU threads during the measurement (None: not recorded)

    def relative(self, label: str, baseline: str) -> float | None:
        """Time per training image relative to `baseline`, geometric mean over the pairs."""
        ratios = [
            by[baseline] / by[label]
            for by in self.speeds.values()
            if by.get(label) and by.get(baseline)
        ]
        return math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else None

    @property
    def source(self) -> str:
        return f"`python -m bench perf --matrix {self.matrix}` on {self.device} ({self.measured})"


def costs_path(workdir: Path, matrix: str) -> Path:
    return within(Path(workdir) / "perf", f"matrix-{matrix}.json")


def save_costs(workdir: Path, costs: Costs) -> Path:
    path = costs_path(workdir, costs.matrix)
    atomic_write_text(path, json.dumps(costs.__dict__, indent=1, sort_keys=True))
    return path


def load_costs(workdir: Path | None, matrix: str) -> Costs | None:
    """The last measurement of this matrix in the work directory, or None."""
    if workdir is None:
        return None
    path = costs_path(workdir, matrix)
    try:
        return Costs(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
