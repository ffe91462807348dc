"""bench/perf/losses.py: the loss-speed table has the promised shape (speed is not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import methods
from bench.perf.losses import format_losses_table, measure_losses


def test_measure_losses_times_every_method_per_shape():
    rows = measure_losses(shapes=((4, 10), (3, 20)), repeats=2)
    assert [(r["method"], r["batch"], r["classes"]) for r in rows] == [
        (name, batch, classes)
        for batch, classes in ((4, 10), (3, 20))
        for name in methods.available()
    ]
    for row in rows:
        assert row["ms"] > 0
        assert row["ratio_to_kd"] == row["ms"] / next(
            r["ms"] for r in rows if r["method"] == "kd" and r["classes"] == row["classes"]
        )
    table = format_losses_table(rows)
    assert table.splitlines()[0].split() == ["method", "batch", "classes", "ms", "ratio_to_kd"]
    assert len(table.splitlines()) == 2 + len(rows)


def test_losses_benchmark_does_not_import_mlflow():
    code = "import sys, bench.perf.losses; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
