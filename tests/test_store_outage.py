"""A tracking server that stops answering for longer than MLflow's retry budget: each worker
says so in one line and leaves its run resumable, the parent starts workers again later and
later, and once the server is back every cell is finished once with every epoch logged once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.store.trackers import MlflowTracker
from tests.postgres_server import free_port, mlflow_server
from tests.runner_helpers import (
    assert_each_cell_finished_once,
    wait_for_students_mid_training,
    write_tiny,
)

pytestmark = pytest.mark.slow

SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
FIRST_RETRY_S = "1"  # the parent's first wait before it starts a worker again (default 5 s)
OUTAGE_S = 6  # past the retry budget above (about 2 s) and past the first two restarts


def test_a_server_outage_past_the_retry_budget_is_waited_out_and_nothing_is_lost(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=2)
    matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 200"))
    work, port = tmp_path / "work", free_port()
    backend = f"sqlite:///{tmp_path / 'server.db'}"

    def serve():
        return mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log", port)

    server = serve()
    url = server.__enter__()
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    env |= SHORT_RETRIES | {"MLFLOW_TRACKING_URI": url, "KDBENCH_STORE_RETRY_S": FIRST_RETRY_S}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--matrix", str(matrix),
                             "--workers", "2", "--workdir", str(work)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_students_mid_training(proc, work, count=1, uri=url)
    finally:
        server.__exit__(None, None, None)  # the outage begins
    time.sleep(OUTAGE_S)
    with serve():
        out = proc.communicate(timeout=600)[0]
        store = MlflowTracker(work, url)
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
        lost = [line for line in out.splitlines() if "is unreachable" in line]
        assert lost and all("trying again in" in line for line in lost), out
        assert f"MLflow server {url} is unreachable" in lost[0]
        assert_each_cell_finished_once(store, cells=2 * 2, epochs=3)
    assert not list((work / "checkpoints").glob("*.pt"))
