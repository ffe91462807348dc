"""A real PostgreSQL (the apt package: initdb and pg_ctl on a temp dir) and a real `mlflow
server` on it, for tests of the shared store. As root, PostgreSQL runs as the `postgres` user."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql")  # Debian: /usr/lib/postgresql/<version>/bin


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not versions:
        raise FileNotFoundError(f"{name} not found: install the postgresql apt package")
    return str(versions[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


_CLUSTERS: dict[str, tuple[Path, list[str]]] = {}  # uri -> (data folder, its start command)


def kill_postgres(uri: str, down_s: float) -> None:
    """Stop the cluster at once (every session dropped, as a crash), wait, start it again."""
    data, start = _CLUSTERS[uri]
    subprocess.run(_as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"]), check=True, capture_output=True)
    time.sleep(down_s)
    subprocess.run(start, check=True, capture_output=True)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A fresh cluster with database `kdbench` in a temp dir of its own (the `postgres` user
    cannot enter root's pytest folders); yields its URI."""
    folder = Path(tempfile.mkdtemp(prefix="kdbench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    subprocess.run(_as_postgres([_pg_tool("initdb"), "-D", str(data), "-A", "trust", "-U",
                                 "kdbench"]), check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    start = _as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-o", options, "-l",
                          str(folder / "log"), "-w", "start"])
    subprocess.run(start, check=True, capture_output=True)
    uri = f"postgresql+psycopg2://kdbench@127.0.0.1:{port}/kdbench"
    _CLUSTERS[uri] = (data, start)
    try:
        subprocess.run(_as_postgres([_pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(port),
                                     "-U", "kdbench", "kdbench"]), check=True,
                       capture_output=True)
        yield uri
    finally:
        _CLUSTERS.pop(uri, None)
        subprocess.run(_as_postgres([_pg_tool("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log: Path,
                  port: int | None = None) -> Iterator[str]:
    """`mlflow server` on the given backend store, proxying artifacts; yields its URL."""
    port = port or free_port()
    with open(log, "a") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
