"""Run tracking: MLflow (embedded sqlite, or a server via MLFLOW_TRACKING_URI) or JSON lines.

The only module that imports mlflow, and it does so lazily (the import costs seconds).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, SpecError
from bench.locks import file_lock
from bench.secrets import redact_uri, remember, scrub
from bench.store.sqlite_template import seed_new_store

EXPERIMENT = "kdbench"
HISTORY_REQUESTS_AT_ONCE = 8  # a server answers one run's metric history per request
RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"


class StoreError(BenchError):
    """A run store that cannot be read or written; the message names it and what to do."""


class StoreUnavailable(StoreError):
    """A tracking server that stopped answering (past MLflow's own retries): the work stops
    where it is, resumable, and goes on when the server is back."""


# what the MLflow client says of a server that is down, overloaded or unreachable
OUTAGE_MARKERS = ("Max retries exceeded", "Connection refused", "Failed to establish",
                  "Read timed out", "Connection aborted", "RemoteDisconnected",
                  "error code 502", "error code 503", "error code 504")


def _is_outage(exc: BaseException) -> bool:
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout)):
            return True
        if any(marker in str(seen) for marker in OUTAGE_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _outages_named(method):
    """A call to a server that is down raises StoreUnavailable, in one line, naming it."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except BenchError:
            raise
        except Exception as exc:
            if self.served and _is_outage(exc):
                raise StoreUnavailable(self.outage(exc)) from None
            raise

    return guarded


@dataclass
class RunRecord:
    run_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class MlflowTracker:
    """Runs in one experiment; a run is found again by its `run_key` tag."""

    def __init__(self, workdir: Path, tracking_uri: str | None = None):
        import logging

        import mlflow
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # a server store would print two links per finished run; kdbench prints its own lines
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

        self.workdir = Path(workdir)
        self.uri = tracking_uri or mlflow_uri(self.workdir)
        remember(self.uri)
        self._mlflow = mlflow
        self._analyzed = False
        db_file = self._sqlite_file()
        # Two processes creating one sqlite store race on its schema: one creates it, under a lock.
        guard = file_lock(db_file.with_name(f".{db_file.name}.lock")) if db_file else nullcontext()
        try:
            with guard:
                if db_file is not None:
                    seed_new_store(db_file, mlflow)
                    _write_ahead_log(db_file)
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = self._experiment()
        except BenchError:
            raise
        except Exception as exc:  # sqlalchemy, sqlite3 and MLflow errors alike
            if self.served and _is_outage(exc):
                raise StoreUnavailable(self._unreadable(exc)) from None
            raise StoreError(self._unreadable(exc)) from None

    def _writing(self):
        """Writes to an embedded sqlite store take turns across processes (with the write-ahead
        log, reads never wait), so parallel workers never meet "database is locked"."""
        db_file = self._sqlite_file()
        return file_lock(db_file.with_name(f".{db_file.name}.write.lock")) if db_file else (
            nullcontext()
        )

    def _sqlite_file(self) -> Path | None:
        if not self.uri.startswith("sqlite:///"):
            return None
        return Path(self.uri.removeprefix("sqlite:///").split("?", 1)[0])

    def _unreadable(self, exc: Exception) -> str:
        reason = scrub((str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200])
        db_file = self._sqlite_file()
        if db_file is None:  # a server: nothing here to restore
            return (
                f"MLflow server {self.describe()} cannot be reached ({type(exc).__name__}: "
                f"{reason}); check that `mlflow server` runs there and that "
                "MLFLOW_TRACKING_URI is its address"
            )
        return (
            f"MLflow store {db_file} cannot be read ({type(exc).__name__}: {reason}); "
            "restore it from a backup or move it away to start a new store"
        )

    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.uri.startswith("sqlite:"):
            location = (self.workdir / "artifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(EXPERIMENT, artifact_location=location)
        except self._mlflow.exceptions.MlflowException:
            # another worker created it first (a shared server has no file lock to take)
            experiment = self.client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                raise
            return experiment.experiment_id

    def describe(self) -> str:
        return redact_uri(self.uri)

    @property
    def served(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def outage(self, exc: BaseException) -> str:
        reason = scrub((str(exc).strip().splitlines() or [type(exc).__name__])[-1])
        reason = re.sub(r"\s+", " ", reason)[:160]
        return (
            f"MLflow server {self.describe()} is unreachable ({reason}); the run is left "
            "resumable at its last checkpoint"
        )

    def address(self) -> tuple[str, str, str]:
        return ("mlflow", str(self.workdir), self.uri)

    def _record(self, run) -> RunRecord:
        return RunRecord(
            run.info.run_id,
            run.info.status,
            dict(run.data.tags),
            dict(run.data.params),
            dict(run.data.metrics),
        )

    @_outages_named
    def search(self, **tags: str) -> list[RunRecord]:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=50000)
        return [self._record(r) for r in runs]

    def find(self, run_key: str) -> RunRecord | None:
        runs = self.search(run_key=run_key)
        runs.sort(key=lambda r: r.status != FINISHED)
        return runs[0] if runs else None

    @_outages_named
    def start(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        from mlflow.entities import Param

        with self._writing():
            run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
            run_id = run.info.run_id
            items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i : i + 100])
        return run_id

    @_outages_named
    def has_run(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
        except self._mlflow.exceptions.MlflowException as exc:
            if self.served and _is_outage(exc):
                raise  # not "the store lost the run": it did not answer
            return False
        return True

    @_outages_named
    def reopen(self, run_id: str) -> None:
        with self._writing():
            self.client.update_run(run_id, status=RUNNING)

    @_outages_named
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        with self._writing():
            self.client.log_batch(run_id, metrics=items)

    @_outages_named
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._writing():
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @_outages_named
    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def fetch_artifact(self, run_id: str, path: str, folder: Path) -> Path | None:
        """A run's artifact, downloaded into a fresh folder under `folder`; None if absent."""
        import tempfile

        folder.mkdir(parents=True, exist_ok=True)
        try:
            local = self.client.download_artifacts(
                run_id, path, tempfile.mkdtemp(prefix=".fetch-", dir=folder)
            )
        except Exception:  # missing artifact or unreachable artifact store: not fetched
            return None
        return Path(local) if Path(local).is_file() else None

    @_outages_named
    def finish(self, run_id: str, status: str) -> None:
        with self._writing():
            self.client.set_terminated(run_id, status)

    @_outages_named
    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def histories(self, run_ids: list[str], key: str) -> dict[str, list[tuple[int, float]]]:
        self._analyze_sqlite()
        if not self.uri.startswith(("http://", "https://")):
            return {run_id: self.history(run_id, key) for run_id in run_ids}
        with ThreadPoolExecutor(max_workers=HISTORY_REQUESTS_AT_ONCE) as pool:
            found = pool.map(lambda run_id: self.history(run_id, key), run_ids)
            return dict(zip(run_ids, found, strict=True))

    def _analyze_sqlite(self) -> None:
        """Give sqlite's planner statistics once per tracker: without them MLflow's per-run
        metric-history query scans every stored value of the key (31 s vs 3 s at 1,000 runs)."""
        if self._analyzed or not self.uri.startswith("sqlite:///"):
            return
        import sqlite3

        self._analyzed = True
        try:
            with sqlite3.connect(self.uri.removeprefix("sqlite:///").split("?", 1)[0]) as db:
                db.execute("ANALYZE")
        except sqlite3.Error:
            pass  # statistics are an optimisation only


def _write_ahead_log(db_file: Path) -> None:
    """sqlite's write-ahead log: readers do not wait for a writer, nor a writer for readers."""
    import sqlite3

    with sqlite3.connect(db_file) as db:
        db.execute("PRAGMA journal_mode=WAL")


class JsonLinesTracker:
    """`--tracking none`: the same records as JSON lines in <workdir>/runs.jsonl."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.path = self.workdir / "runs.jsonl"

    def describe(self) -> str:
        return str(self.path)

    def address(self) -> tuple[str, str, str]:
        return ("none", str(self.workdir), "")

    def _append(self, event: dict) -> None:
        # one writer at a time, so parallel workers' lines never interleave
        with file_lock(self.path.with_name(".runs.jsonl.lock")), open(self.path, "a") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _replay(self) -> tuple[dict[str, RunRecord], dict[str, dict[str, list]]]:
        records: dict[str, RunRecord] = {}
        histories: dict[str, dict[str, list]] = {}
        if not self.path.is_file():
            return records, histories
        text = self._read_text()
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines) and not text.endswith("\n"):
                    break  # the torn last line of a writer that died mid-write: never committed
                raise StoreError(
                    f"run store {self.path} line {number} is not JSON; repair or remove that line"
                ) from None
            run_id = event["run_id"]
            if event["event"] == "start":
                records[run_id] = RunRecord(run_id, RUNNING, event["tags"], event["params"], {})
                histories[run_id] = {}
            elif event["event"] == "metrics":
                records[run_id].metrics.update(event["metrics"])
                for k, v in event["metrics"].items():
                    histories[run_id].setdefault(k, []).append((event["step"], v))
            elif event["event"] == "tags":
                records[run_id].tags.update(event["tags"])
            elif event["event"] == "status":
                records[run_id].status = event["status"]
        return records, histories

    def _read_text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"run store {self.path} cannot be read ({exc})") from None

    def has_run(self, run_id: str) -> bool:
        return run_id in self._replay()[0]

    def search(self, **tags: str) -> list[RunRecord]:
        records, _ = self._replay()
        return [r for r in records.values() if all(r.tags.get(k) == v for k, v in tags.items())]

    def find(self, run_key: str) -> RunRecord | None:
        runs = sorted(self.search(run_key=run_key), key=lambda r: r.status != FINISHED)
        return runs[0] if runs else None

    def start(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run_id = uuid.uuid4().hex
        params = {k: str(v) for k, v in params.items()}
        self._append(
            {
                "event": "start",
                "run_id": run_id,
                "name": name,
                "params": params,
                "tags": dict(tags),
                "time": time.time(),
            }
        )
        return run_id

    def reopen(self, run_id: str) -> None:
        self._append({"event": "status", "run_id": run_id, "status": RUNNING})

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self._append(
            {
                "event": "metrics",
                "run_id": run_id,
                "step": step,
                "metrics": {k: float(v) for k, v in metrics.items()},
            }
        )

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._append(
            {"event": "tags", "run_id": run_id, "tags": {k: str(v) for k, v in tags.items()}}
        )

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        target = self.workdir / "artifacts" / run_id / (folder or "")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / Path(path).name)

    def fetch_artifact(self, run_id: str, path: str, folder: Path) -> Path | None:
        source = self.workdir / "artifacts" / run_id / path
        if not source.is_file():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f".fetch-{uuid.uuid4().hex}"
        shutil.copy2(source, copy)
        return copy

    def finish(self, run_id: str, status: str) -> None:
        self._append({"event": "status", "run_id": run_id, "status": status})

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        _, histories = self._replay()
        return sorted(histories.get(run_id, {}).get(key, []))

    def histories(self, run_ids: list[str], key: str) -> dict[str, list[tuple[int, float]]]:
        _, histories = self._replay()  # the file is replayed once, not once per run
        return {run_id: sorted(histories.get(run_id, {}).get(key, [])) for run_id in run_ids}


Tracker = MlflowTracker | JsonLinesTracker


def reconnect(address: tuple[str, str, str]) -> Tracker:
    """The same store from another process (see `address()`)."""
    kind, workdir, uri = address
    if kind == "mlflow":
        return MlflowTracker(Path(workdir), uri)
    return JsonLinesTracker(Path(workdir))


def mlflow_uri(workdir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else the embedded sqlite store of the work directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(workdir) / 'mlflow.db'}"


def describe_store(kind: str, workdir: Path) -> str:
    """Where `open_tracker(kind, workdir)` would read and write, without opening it."""
    if kind == "none":
        return str(Path(workdir) / "runs.jsonl")
    return redact_uri(mlflow_uri(workdir))


def open_tracker(kind: str, workdir: Path) -> Tracker:
    if kind == "mlflow":
        return MlflowTracker(workdir)
    if kind == "none":
        return JsonLinesTracker(workdir)
    raise SpecError(f"--tracking '{kind}': expected mlflow or none")
