"""Claims: which worker works on a run. Taking a claim never waits; a claim whose holder died is
free again. After taking one, a worker re-reads the run's state and skips it if finished.

`FileClaims` holds an flock per run in the work directory: right for workers that share a machine
(or a file system with working locks). `PostgresClaims` holds a PostgreSQL session-level advisory
lock per run: right for workers on machines that share only the store. Both are released by the
system when their holder dies (the kernel closes the file; the server ends the session when the
connection drops).

A dropped connection also ends the session of a holder that is alive: when PostgreSQL restarts,
every advisory lock is gone while the workers that held them still train. So a PostgreSQL claim
is fenced by a lease, a row in `kdbench_leases` that its holder renews every `RENEW_S` seconds
(at training step boundaries) on the connection that holds the lock; a holder that cannot renew
stops its run, resumable. A worker that takes the advisory lock of a cell whose lease another
holder renewed less than `LEASE_S` ago leaves the cell alone, so by the time it may start, the
old holder has stopped. The lease's times are the server's (`now()`): no clocks need agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Protocol

from bench.errors import SpecError
from bench.locks import try_lock
from bench.secrets import redact_uri, remember
from bench.store.trackers import StoreUnavailable

CLAIMS_VARIABLE = "KDBENCH_CLAIMS"  # a postgresql:// URI; unset: file claims in the workdir
LEASE_S = 10  # a PostgreSQL claim's lease, renewed every RENEW_S by its holder
RENEW_S = 2


class ClaimsUnavailable(StoreUnavailable):
    """The claims database stopped answering: claims held on it may be gone."""


class Claim(Protocol):
    def release(self) -> None: ...

    def held(self) -> bool:
        """Still this worker's (a PostgreSQL claim renews its lease, at most every RENEW_S)."""
        ...


class Claims(Protocol):
    def try_claim(self, run_key: str) -> Claim | None:
        """The claim on `run_key`, or None while another live worker holds it."""
        ...


class _HeldLock:
    def __init__(self, handle):
        self._handle = handle

    def release(self) -> None:
        self._handle.close()

    def held(self) -> bool:
        return True  # an flock lives as long as this process


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
    def __init__(self, claims: PostgresClaims, key: int, run_key: str):
        self._claims, self._key, self._run_key = claims, key, run_key
        self._renewed = time.monotonic()
        self._lost = False

    def held(self) -> bool:
        if self._lost or time.monotonic() - self._renewed < RENEW_S:
            return not self._lost
        try:
            renewed = self._claims.execute(
                "UPDATE kdbench_leases SET expires = now() + %s * interval '1 second' "
                "WHERE run_key = %s AND holder = %s",
                (LEASE_S, self._run_key, self._claims.holder),
            )
        except ClaimsUnavailable:
            renewed = 0
        self._lost = renewed != 1
        self._renewed = time.monotonic()
        return not self._lost

    def release(self) -> None:
        if self._lost:
            return  # the session, and with it the lock, is gone already
        with contextlib.suppress(ClaimsUnavailable):
            self._claims.execute("DELETE FROM kdbench_leases WHERE run_key = %s AND holder = %s",
                                 (self._run_key, self._claims.holder))
            self._claims.execute("SELECT pg_advisory_unlock(%s)", (self._key,))


class PostgresClaims:
    """Advisory locks on one connection per worker, kept open while the worker lives, each
    fenced by a lease (see the module's docstring)."""

    def __init__(self, uri: str):
        import psycopg2

        self.uri = uri
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        remember(uri)
        try:
            self._connection = psycopg2.connect(uri, connect_timeout=10)
        except psycopg2.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ClaimsUnavailable(
                f"{CLAIMS_VARIABLE}: cannot connect to {redact_uri(uri)} ({reason})"
            ) from None
        self._connection.autocommit = True
        # workers starting together race on CREATE TABLE IF NOT EXISTS (a unique violation in
        # PostgreSQL's catalog): one creates it, under a lock of its own
        schema_lock = advisory_key("kdbench_leases table")
        self.execute("SELECT pg_advisory_lock(%s)", (schema_lock,))
        try:
            self.execute("CREATE TABLE IF NOT EXISTS kdbench_leases (run_key text PRIMARY KEY, "
                         "holder text NOT NULL, expires timestamptz NOT NULL)")
        finally:
            self.execute("SELECT pg_advisory_unlock(%s)", (schema_lock,))

    def describe(self) -> str:
        return f"PostgreSQL advisory locks at {redact_uri(self.uri)}"

    def close(self) -> None:
        self._connection.close()

    def execute(self, sql: str, values: tuple = ()) -> int:
        """Run one statement; the rows it changed (or the first column of its one row)."""
        import psycopg2

        try:
            with self._connection.cursor() as cursor:
                cursor.execute(sql, values)
                if cursor.description is not None:
                    return cursor.fetchone()[0]
                return cursor.rowcount
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            reason = " ".join(str(exc).split())[:160]
            raise ClaimsUnavailable(
                f"claims database {redact_uri(self.uri)} stopped answering ({reason}); the "
                "runs it claimed stop, resumable"
            ) from None

    def try_claim(self, run_key: str) -> Claim | None:
        key = advisory_key(run_key)
        if not self.execute("SELECT pg_try_advisory_lock(%s)", (key,)):
            return None
        leased = self.execute(
            "SELECT count(*) FROM kdbench_leases WHERE run_key = %s AND holder <> %s "
            "AND expires > now()",
            (run_key, self.holder),
        )
        if leased:  # its holder lost the lock with its connection and may still be stopping
            self.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return None
        self.execute(
            "INSERT INTO kdbench_leases VALUES (%s, %s, now() + %s * interval '1 second') "
            "ON CONFLICT (run_key) DO UPDATE SET holder = EXCLUDED.holder, "
            "expires = EXCLUDED.expires",
            (run_key, self.holder, LEASE_S),
        )
        return _AdvisoryLock(self, key, run_key)


def describe_claims(workdir: Path, uri: str | None = None) -> str:
    """What `open_claims` would use, without connecting."""
    uri = uri or os.environ.get(CLAIMS_VARIABLE) or None
    if uri is None:
        return f"file locks in {Path(workdir) / 'locks'}"
    return f"PostgreSQL advisory locks at {redact_uri(uri)}"


def check_claims(workdir: Path, uri: str | None = None) -> None:
    """A bad claims URI (or an unreachable database) as one line, before anything is done; the
    connection it opens to find out is closed."""
    try:
        claims = open_claims(workdir, uri)
    except ClaimsUnavailable as exc:
        raise SpecError(str(exc)) from None
    if isinstance(claims, PostgresClaims):
        claims.close()


def open_claims(workdir: Path, uri: str | None = None) -> Claims:
    """PostgreSQL claims where a postgresql:// URI is given (or in $KDBENCH_CLAIMS), else file
    claims in the work directory."""
    uri = uri or os.environ.get(CLAIMS_VARIABLE) or None
    remember(uri)
    if uri is None:
        return FileClaims(workdir)
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise SpecError(
            f"{CLAIMS_VARIABLE}='{redact_uri(uri)}': expected a postgresql:// URI (or unset for "
            "file claims in the work directory)"
        )
    return PostgresClaims(f"postgresql://{rest}")  # the store's URI may name its driver
