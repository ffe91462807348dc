"""A team's shared store: a real PostgreSQL, a real `mlflow server` on it and three workers that
claim cells through PostgreSQL advisory locks. Every cell is FINISHED exactly once, the teacher
is trained once, nothing is left RUNNING, and a worker SIGKILLed mid-run has its cell taken over
and resumed in the same MLflow run."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from bench.store.claims import PostgresClaims, open_claims
from bench.store.trackers import FINISHED, MlflowTracker
from tests.postgres_server import mlflow_server, postgres
from tests.runner_helpers import assert_each_cell_finished_once, bench_cli, write_tiny

pytestmark = pytest.mark.slow


def _two_machines(tmp_path, database: str, url: str) -> None:
    """Worker groups with work directories of their own (machines without a shared file system)
    on other data: the PostgreSQL claims keep every cell, the teacher included, to one of them;
    a machine that needs a teacher trained elsewhere loads its weights from the store."""
    import subprocess
    import sys

    (tmp_path / "other").mkdir()
    matrix = write_tiny(tmp_path / "other", methods="[ce, kd]", seeds=2)
    matrix.write_text(matrix.read_text().replace("seed: 3", "seed: 4"))

    def machine(i: int, seeds: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--workers", "1",
             "--seeds", str(seeds), "--claims", database, "--workdir", str(tmp_path / f"m{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": url, "KDBENCH_FAULT": ""},
        )

    def ours() -> list:
        return [r for r in MlflowTracker(tmp_path / "m0", url).search()
                if "'seed': 4" in r.params.get("data.synthetic", "")]

    procs = [machine(0, 2), machine(1, 2)]  # at the same time
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    per_key = Counter(r.tags["run_key"] for r in ours())
    assert len(per_key) == 2 * 2 + 1 and set(per_key.values()) == {1}, per_key
    third = machine(2, 3)  # a third machine, later: one more seed, the teacher from the store
    out = third.communicate(timeout=600)[0]
    assert third.returncode == 0, out
    assert "2 of 6 cells to do" in out and "done: 2 trained" in out
    assert "teacher resnet8: trained by another worker, weights from the store" in out
    runs = ours()
    assert Counter(r.status for r in runs) == {FINISHED: len(runs)}
    assert sum(r.tags["role"] == "teacher" for r in runs) == 1  # trained once, on one machine


def test_three_workers_on_an_mlflow_server_backed_by_postgresql(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=3)
    matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 100"))
    with postgres() as database, mlflow_server(
        database, tmp_path / "artifacts", tmp_path / "mlflow.log"
    ) as url:
        # workers that start together on a fresh server all find one experiment
        import subprocess
        import sys

        code = ("import sys; from bench.store.trackers import MlflowTracker; "
                "MlflowTracker(sys.argv[1], sys.argv[2])")
        opening = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"opener{i}"),
                                     url], stderr=subprocess.PIPE, text=True)
                   for i in range(3)]
        errors = [p.communicate(timeout=120)[1] for p in opening]
        assert [p.returncode for p in opening] == [0, 0, 0], errors
        marker = tmp_path / "killed-once"
        result = bench_cli(["run", "--matrix", str(matrix), "--workers", "3", "--claims",
                            database], tmp_path / "work", fault=f"kill-once:2:1:{marker}",
                           env={"MLFLOW_TRACKING_URI": url})
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert marker.is_file() and "died (exit code -9)" in out
        store = MlflowTracker(tmp_path / "work", url)
        runs = assert_each_cell_finished_once(store, cells=2 * 3, epochs=3)
        assert sum(r.tags["role"] == "teacher" for r in runs) == 1  # trained once
        resumed = [r for r in runs if r.tags.get("resume_count") == "1"]
        assert len(resumed) == 1
        # artifacts went through the server's proxy into its destination
        assert list((tmp_path / "artifacts").rglob("*.pt"))
        experiments = store.client.search_experiments()
        assert [e.name for e in experiments if e.name == "kdbench"] == ["kdbench"]
        # the report reads the server store as it reads sqlite, and names each run's host
        report = bench_cli(["report", "--matrix", str(matrix), "--out", str(tmp_path / "report")],
                           tmp_path / "work", env={"MLFLOW_TRACKING_URI": url})
        assert report.returncode == 0, report.stderr
        import csv
        import socket

        with open(tmp_path / "report" / "runs.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 6 and {row["host"] for row in rows} == {socket.gethostname()}
        # a claim is one advisory lock: a second holder is refused until the first lets go
        first, second = open_claims(tmp_path, database), PostgresClaims(
            database.replace("+psycopg2", ""))
        held = first.try_claim("a-run-key")
        assert held is not None and second.try_claim("a-run-key") is None
        held.release()
        assert second.try_claim("a-run-key") is not None
        _two_machines(tmp_path, database, url)


def test_a_claims_uri_that_is_not_postgresql_is_one_line(tmp_path, capsys):
    from bench.__main__ import main

    code = main(["run", "--matrix", "smoke", "--workers", "2", "--claims",
                 "mysql://u:secret@h/db", "--workdir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: KDBENCH_CLAIMS='mysql://u:***@h/db': expected a postgresql:// URI (or unset for "
        "file claims in the work directory)"
    ]
