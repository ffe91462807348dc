"""Claims: which worker works on a run. Taking a claim never waits; a claim whose holder died is
free again. After taking one, a worker re-reads the run's state and skips it if finished.

`FileClaims` holds an flock per run in the work directory (the OS drops it when its process
dies): right for workers sharing a machine and its work directory. A lease kept in a shared store
(with an expiry renewed by a heartbeat) is the same interface for workers on many machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bench.locks import try_lock


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

    def try_claim(self, run_key: str) -> Claim | None:
        handle = try_lock(self.folder / f"run-{run_key}.lock")
        return None if handle is None else _HeldLock(handle)
