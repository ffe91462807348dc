"""The CPU cores of one machine, shared by every kdbench parent running workers on it: each
parent holds threads for its workers in a small registry (one file per parent, under a lock),
and a parent that starts while others run takes the cores they leave, at least one thread per
worker, instead of all of them again."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.files import alive
from bench.locks import file_lock

REGISTRY = Path(tempfile.gettempdir()) / f"kdbench-cores-{os.getuid()}"


def _held_by_others(registry: Path) -> int:
    held = 0
    for entry in registry.glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        if not alive(pid):
            entry.unlink(missing_ok=True)
            continue
        with contextlib.suppress(OSError, ValueError):
            held += int(entry.read_text())
    return held


@contextlib.contextmanager
def threads_for(workers: int, registry: Path = REGISTRY) -> Iterator[tuple[int, int]]:
    """(threads for each of `workers` CPU workers, threads other parents hold), held until the
    block ends."""
    cores = os.cpu_count() or 1
    with file_lock(registry / ".lock"):
        others = _held_by_others(registry)
        threads = max(1, (cores - others) // workers) if others < cores else 1
        (registry / str(os.getpid())).write_text(str(threads * workers))
    try:
        yield threads, others
    finally:
        (registry / str(os.getpid())).unlink(missing_ok=True)
