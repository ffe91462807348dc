"""A `--workers` parent that dies (SIGKILL) or loses its stdout (`| head -5`) never turns work
into FAILED: orphaned workers stop at a step boundary and leave their runs KILLED and resumable
with their checkpoints, and the same command then finishes every cell once."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from bench.store.trackers import FAILED, KILLED, RUNNING, MlflowTracker
from tests.runner_helpers import (
    assert_each_cell_finished_once,
    start_workers_run,
    wait_for_students_mid_training,
)

pytestmark = pytest.mark.slow

SEEDS, EPOCHS = 2, 3


def _start(tmp_path):
    return start_workers_run(tmp_path, SEEDS, merged_output=False)


def _wait_until_the_group_is_gone(group: int, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "orphaned workers still running"
        time.sleep(0.2)


def test_sigkill_of_the_workers_parent_leaves_every_run_resumable(tmp_path):
    proc, command, env, work = _start(tmp_path)
    wait_for_students_mid_training(proc, work)
    proc.kill()  # SIGKILL: no handler runs, the workers are orphaned
    proc.wait()
    _wait_until_the_group_is_gone(proc.pid)
    runs = MlflowTracker(work).search()
    assert not [r for r in runs if r.status in (RUNNING, FAILED)], [
        (r.tags["mlflow.runName"], r.status, r.tags.get("failure_reason")) for r in runs
    ]
    killed = [r for r in runs if r.status == KILLED]
    assert len(killed) >= 2 and all(r.tags["resumable"] == "true" for r in killed)
    # a run stopped past its first epoch resumes from its checkpoint (one stopped before it,
    # started meanwhile, resumes from the start)
    assert all((work / "checkpoints" / f"{r.tags['run_key']}.pt").is_file() for r in killed
               if int(r.tags.get("epoch", "0")) >= 1)

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_each_cell_finished_once(MlflowTracker(work), cells=2 * SEEDS, epochs=EPOCHS)


def test_a_closed_stdout_neither_kills_the_parent_nor_fails_a_run(tmp_path):
    """`bench run --workers 2 | head -5`: the parent keeps supervising with its stdout gone."""
    proc, command, env, work = _start(tmp_path)
    for _ in range(2):
        proc.stdout.readline()
    wait_for_students_mid_training(proc, work)
    proc.stdout.close()  # as `head` exits: every later write to stdout is a broken pipe
    err = proc.stderr.read()
    proc.wait(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert_each_cell_finished_once(MlflowTracker(work), cells=2 * SEEDS, epochs=EPOCHS)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "0 of 4 cells to do" in again.stdout, again.stdout
