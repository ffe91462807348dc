"""A new sqlite store copied from the cached template is the database MLflow itself creates."""

import sqlite3

import mlflow

from bench.store import sqlite_template
from bench.store.trackers import FINISHED, MlflowTracker


def _schema(db) -> tuple[list, list]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select name from sqlite_master where type='table'")
        tables = sorted(r[0] for r in rows)
        version = conn.execute("select version_num from alembic_version").fetchall()
    return tables, version


def test_seeded_store_has_mlflows_own_schema_and_works(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reference = tmp_path / "reference.db"
    mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{reference}").search_experiments()

    seeded = tmp_path / "work" / "mlflow.db"
    sqlite_template.seed_new_store(seeded, mlflow)
    assert list((tmp_path / "cache" / "kdbench" / "mlflow-schema").glob("mlflow-*.db"))
    assert _schema(seeded) == _schema(reference)

    tracker = MlflowTracker(tmp_path / "work")
    run_id = tracker.start("run", {"p": 1}, {"run_key": "k"})
    tracker.log_metrics(run_id, {"m": 1.0}, step=1)
    tracker.finish(run_id, FINISHED)
    assert [r.status for r in MlflowTracker(tmp_path / "work").search()] == [FINISHED]


def test_an_existing_store_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")
    sqlite_template.seed_new_store(db, mlflow)
    assert db.read_bytes() == b""
