"""A tracking server that stops answering for longer than MLflow's retry budget: each worker
says so in one line and leaves its run resumable, the parent starts workers again later and
later, and once the server is back every cell is finished once with every epoch logged once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.store.trackers import RUNNING, MlflowTracker
from tests.postgres_server import free_port, mlflow_server
from tests.runner_helpers import assert_each_cell_finished_once, write_tiny

pytestmark = pytest.mark.slow

SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}  # fmt: skip
OUTAGE_S = 14  # past the retry budget above (about 2 s) and past the first restart (5 s)


def test_a_server_outage_past_the_retry_budget_is_waited_out_and_nothing_is_lost(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=2)
    matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 100"))
    work, port = tmp_path / "work", free_port()
    backend = f"sqlite:///{tmp_path / 'server.db'}"

    def serve():
        return mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log", port)

    server = serve()
    url = server.__enter__()
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    env |= SHORT_RETRIES | {"MLFLOW_TRACKING_URI": url}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--matrix", str(matrix),
                             "--workers", "2", "--workdir", str(work)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:  # two students past their first epoch, with epochs left
            busy = [r for r in MlflowTracker(work, url).search()
                    if r.status == RUNNING and r.tags.get("role") == "student"
                    and r.tags.get("epoch") == "1"]  # fmt: skip
            if len(busy) >= 2:
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
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
