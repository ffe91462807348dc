"""Matrix throughput with several workers on this machine: cells per hour of a tiny matrix, as a
ratio to one worker, measured in one run (`python -m bench perf --workers 1,2`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.launch.workers import run_workers, worker_slots
from bench.spec import build_matrix
from bench.store.trackers import MlflowTracker

# Small cells, each a real run end to end (start, train, evaluate, checkpoint, log, finish): what
# the per-cell overheads and the sharing of the cores are measured on.
PERF_MATRIX = {
    "name": "perf_workers",
    "data": {"dataset": "synthetic",
             "synthetic": {"classes": 10, "train_per_class": 40, "test_per_class": 10}},
    "recipe": {"epochs": 2, "batch_size": 32, "milestones": []},
    "teacher": {"recipe": {"epochs": 1}},
    "pairs": [{"teacher": "resnet8", "student": "resnet8"}],
    "methods": ["ce", "kd", "dkd"],
    "seeds": 4,
}


def measure_workers(counts: list[int], device: str = "cpu", data_workdir: Path | None = None,
                    spec: dict | None = None):
    """Wall-clock seconds and cells per hour of the same matrix with each worker count, each in
    a fresh work directory (store and generated data included, as a user's first run)."""
    rows: list[dict[str, Any]] = []
    matrix = build_matrix(spec or PERF_MATRIX, "perf")
    with tempfile.TemporaryDirectory(prefix="kdbench-perf-workers-") as folder:
        for count in counts:
            workdir = Path(folder) / f"workers-{count}"
            tracker = MlflowTracker(workdir)
            slots = worker_slots(count, [], 1, device)
            started = time.perf_counter()
            summary = run_workers(matrix, tracker=tracker, workdir=workdir, slots=slots,
                                  log=lambda line: None)
            seconds = time.perf_counter() - started
            cells = len(summary.trained)
            rows.append({"workers": count, "cells": cells, "seconds": seconds,
                         "cells_per_hour": 3600 * cells / seconds})
    base = rows[0]["cells_per_hour"]
    for row in rows:
        row["ratio_to_first"] = row["cells_per_hour"] / base
    return rows


def format_workers_table(rows: list[dict[str, Any]]) -> str:
    headers = ["workers", "cells", "seconds", "cells_per_hour", "ratio_to_first"]
    return tabulate([[r[h] for h in headers] for r in rows], headers=headers,
                    floatfmt=(None, None, ".1f", ".0f", ".2f"))
