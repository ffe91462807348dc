"""PostgreSQL dies under a claim: every advisory lock goes with it while its holder still trains.
The holder's lease fences the cell: the holder stops (resumable) when it cannot renew, and no
other machine starts the cell before the lease has run out, so no cell is trained by two
machines at once, and each is finished once with every epoch logged once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.store.trackers import RUNNING, MlflowTracker
from tests.postgres_server import kill_postgres, postgres
from tests.runner_helpers import assert_each_cell_finished_once, write_tiny

pytestmark = pytest.mark.slow

EPOCHS = 6


def test_postgresql_killed_under_a_claim_never_lets_two_machines_train_one_cell(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=2)
    text = matrix.read_text().replace("train_per_class: 24", "train_per_class: 150")
    matrix.write_text(text.replace("epochs: 3,", f"epochs: {EPOCHS},").replace("[2]", "[4]"))
    work = tmp_path / "work"  # shared by both machines (a cluster's shared file system)
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    with postgres() as database:

        def machine() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--workers",
                 "1", "--claims", database, "--workdir", str(work)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            )

        machines = [machine(), machine()]
        deadline = time.monotonic() + 300
        while True:  # a student past its first epoch, with epochs left
            busy = []
            if (work / "mlflow.db").is_file():
                busy = [r for r in MlflowTracker(work).search()
                        if r.status == RUNNING and r.tags.get("role") == "student"
                        and r.tags.get("epoch") in ("1", "2")]
            if busy:
                break
            ended = [m for m in machines if m.poll() is not None]
            assert not ended and time.monotonic() < deadline, ended[0].communicate()[0]
            time.sleep(0.2)
        kill_postgres(database, down_s=3)
        outs = [m.communicate(timeout=600)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outs
    text = "\n".join(outs)
    assert "Traceback" not in text, text
    assert "its claim was lost with the claims database's connection" in text, text
    assert_each_cell_finished_once(MlflowTracker(work), cells=2 * 2, epochs=EPOCHS)
