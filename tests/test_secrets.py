"""A tracking URI and a claims URI that carry passwords: neither password appears in anything
kdbench writes (stdout, stderr, the report, runs.csv, the leaderboard, the work directory) or
logs to the store (every run's params and tags, and the store's database file itself)."""

from __future__ import annotations

import pytest

from bench.secrets import redact_uri, secrets_of
from bench.store.trackers import MlflowTracker
from tests.postgres_server import mlflow_server, postgres
from tests.runner_helpers import bench_cli, write_tiny

TRACKING_SECRET, CLAIMS_SECRET = "tr4ck1ngS3cret", "cl41msS3cret"


def test_redact_uri_hides_the_password_and_secret_query_values():
    assert redact_uri("http://alice:pw%21x@host:5000/x?token=abc&page=2") == (
        "http://alice:***@host:5000/x?token=***&page=2"
    )
    assert redact_uri("postgresql://kdbench@127.0.0.1:5432/db") == (
        "postgresql://kdbench@127.0.0.1:5432/db"
    )
    assert secrets_of("not a uri [") == [] and redact_uri("sqlite:////tmp/x.db") == (
        "sqlite:////tmp/x.db"
    )


@pytest.mark.slow
def test_passwords_in_the_store_and_claims_uris_are_written_nowhere(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=1)
    work, reports = tmp_path / "work", tmp_path / "reports"
    with postgres() as database:
        claims = database.replace("kdbench@", f"kdbench:{CLAIMS_SECRET}@")  # trust: accepted
        backend = f"sqlite:///{tmp_path / 'server.db'}"
        with mlflow_server(backend, tmp_path / "artifacts", tmp_path / "server.log") as url:
            tracking = url.replace("http://", f"http://alice:{TRACKING_SECRET}@")
            env = {"MLFLOW_TRACKING_URI": tracking}
            outputs = [
                bench_cli(["run", "--matrix", str(matrix), "--claims", claims], work, env=env),
                bench_cli(["run", "--matrix", str(matrix), "--dry-run"], work, env=env),
                bench_cli(["status", "--matrix", str(matrix)], work, env=env),
                bench_cli(["report", "--matrix", str(matrix), "--out", str(reports / "tiny")],
                          work, env=env),
                bench_cli(["leaderboard", "--matrix", str(matrix), "--out",
                           str(reports / "leaderboard")], work, env=env),
                # errors that name the stores
                bench_cli(["run", "--matrix", str(matrix), "--claims",
                           claims.replace("postgresql+psycopg2", "mysql")], work, env=env),
                bench_cli(["report", "--matrix", str(matrix)], work, env={
                    "MLFLOW_TRACKING_URI": tracking.replace(url.rsplit(":", 1)[1], "9"),
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}),
            ]
            records = MlflowTracker(work, tracking).search()
    assert [o.returncode for o in outputs] == [0, 0, 0, 0, 0, 2, 1], outputs
    assert "alice:***@" in outputs[0].stdout and "kdbench:***@" in outputs[5].stderr
    assert "MLflow server http://alice:***@127.0.0.1:9 cannot be reached" in outputs[6].stderr
    text = "".join(o.stdout + o.stderr for o in outputs)
    text += "".join(str(r.params) + str(r.tags) for r in records)
    assert len(records) == 3 and (reports / "tiny" / "runs.csv").is_file()
    files = [p for folder in (work, reports, tmp_path / "artifacts") for p in folder.rglob("*")
             if p.is_file()] + [tmp_path / "server.db"]
    assert len(files) > 20
    for secret in (TRACKING_SECRET, CLAIMS_SECRET):
        assert secret not in text
        assert [p for p in files if secret.encode() in p.read_bytes()] == []
