"""Workers started together on one matrix share the work: every run key is trained and FINISHED
exactly once, no worker prints a traceback, and nothing is left RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from bench.store.trackers import FINISHED, MlflowTracker
from tests.runner_helpers import write_tiny

pytestmark = pytest.mark.slow


def _start(matrix, workdir, seeds: int):
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    args = ["run", "--matrix", str(matrix), "--workdir", str(workdir), "--seeds", str(seeds)]
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _run_together(matrix, workdir, workers: int, seeds: int) -> None:
    procs = [_start(matrix, workdir, seeds) for _ in range(workers)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "Traceback" not in out + err


def _finished_once(workdir, cells: int) -> None:
    runs = MlflowTracker(workdir).search()
    assert Counter(r.status for r in runs) == {FINISHED: len(runs)}
    per_key = Counter(r.tags["run_key"] for r in runs)
    assert len(per_key) == cells
    assert set(per_key.values()) == {1}, per_key


def test_two_then_three_workers_on_a_fresh_then_existing_store(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd, dkd]")
    matrix.write_text(matrix.read_text().replace("epochs: 3,", "epochs: 1,").replace("[2]", "[]"))
    workdir = tmp_path / "work"
    _run_together(matrix, workdir, workers=2, seeds=1)  # a fresh work dir: the store is created
    _finished_once(workdir, cells=3 + 1)  # 3 methods x 1 seed, and the teacher
    _run_together(matrix, workdir, workers=3, seeds=3)  # the existing store, 6 new cells
    _finished_once(workdir, cells=3 * 3 + 1)
