"""Claims: which worker works on a run. Taking a claim never waits; a claim whose holder died is
free again. After taking one, a worker re-reads the run's state and skips it if finished.

`FileClaims` holds an flock per run in the work directory: right for workers that share a machine
(or a file system with working locks). `PostgresClaims` holds a PostgreSQL session-level advisory
lock per run: right for workers on machines that share only the store. Both are released by the
system when their holder dies (the kernel closes the file; the server ends the session when the
connection drops), so neither needs a lease, a heartbeat or clocks that agree. A lease kept as a
tag in the tracking store would need all three, and MLflow has no compare-and-set to take it
atomically; PostgreSQL, which a team's MLflow server already runs on, has one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from bench.errors import SpecError
from bench.locks import try_lock

CLAIMS_VARIABLE = "KDBENCH_CLAIMS"  # a postgresql:// URI; unset: file claims in the workdir


class Claim(Protocol):
    def release(self) -> None: ...


class Claims(Protocol):
    def try_claim(self, run_key: str) -> Claim | None:
        """The claim on `run_key`, or None while another live worker holds it."""
        ...


class _HeldLock:
    def __init__(self, handle):
        self._handle = handle

    def release(self) -> None:
        self._handle.close()


class FileClaims:
    def __init__(self, workdir: Path):
        self.folder = Path(workdir) / "locks"

    def describe(self) -> str:
        return f"file locks in {self.folder}"

    def try_claim(self, run_key: str) -> Claim | None:
        handle = try_lock(self.folder / f"run-{run_key}.lock")
        return None if handle is None else _HeldLock(handle)


def advisory_key(run_key: str) -> int:
    """A run key as PostgreSQL's 64-bit advisory-lock key (signed bigint)."""
    return int.from_bytes(hashlib.sha256(run_key.encode()).digest()[:8], "big", signed=True)


class _AdvisoryLock:
    def __init__(self, connection, key: int):
        self._connection, self._key = connection, key

    def release(self) -> None:
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", (self._key,))


class PostgresClaims:
    """Advisory locks on one connection per worker, kept open while the worker lives."""

    def __init__(self, uri: str):
        import psycopg2

        self.uri = uri
        try:
            self._connection = psycopg2.connect(uri, connect_timeout=10)
        except psycopg2.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SpecError(
                f"{CLAIMS_VARIABLE}: cannot connect to {_redacted(uri)} ({reason})"
            ) from None
        self._connection.autocommit = True

    def describe(self) -> str:
        return f"PostgreSQL advisory locks at {_redacted(self.uri)}"

    def close(self) -> None:
        self._connection.close()

    def try_claim(self, run_key: str) -> Claim | None:
        key = advisory_key(run_key)
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            (taken,) = cursor.fetchone()
        return _AdvisoryLock(self._connection, key) if taken else None


def _redacted(uri: str) -> str:
    """The URI without its password."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return uri
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}@{host}"


def check_claims(workdir: Path, uri: str | None = None) -> None:
    """A bad claims URI (or an unreachable database) as one line, before anything is done; the
    connection it opens to find out is closed."""
    claims = open_claims(workdir, uri)
    if isinstance(claims, PostgresClaims):
        claims.close()


def open_claims(workdir: Path, uri: str | None = None) -> Claims:
    """PostgreSQL claims where a postgresql:// URI is given (or in $KDBENCH_CLAIMS), else file
    claims in the work directory."""
    uri = uri or os.environ.get(CLAIMS_VARIABLE) or None
    if uri is None:
        return FileClaims(workdir)
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise SpecError(
            f"{CLAIMS_VARIABLE}='{_redacted(uri)}': expected a postgresql:// URI (or unset for "
            "file claims in the work directory)"
        )
    return PostgresClaims(f"postgresql://{rest}")  # the store's URI may name its driver
