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


def _start(matrix, workdir):
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("workers, store", [(2, "fresh"), (3, "existing")])
def test_workers_started_together_train_each_run_once(tmp_path, workers, store):
    matrix = write_tiny(tmp_path, methods="[ce, kd, dkd]", seeds=2)
    matrix.write_text(matrix.read_text().replace("epochs: 3,", "epochs: 1,").replace("[2]", "[]"))
    workdir = tmp_path / "work"
    if store == "existing":
        MlflowTracker(workdir)  # the schema and the experiment exist before the workers start
    procs = [_start(matrix, workdir) for _ in range(workers)]
    results = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in out + err
    runs = MlflowTracker(workdir).search()
    assert Counter(r.status for r in runs) == {FINISHED: len(runs)}
    per_key = Counter(r.tags["run_key"] for r in runs)
    assert len(per_key) == 3 * 2 + 1  # 3 methods x 2 seeds, and the teacher
    assert set(per_key.values()) == {1}, per_key
