"""Fault injection for tests, driven by $KDBENCH_FAULT (unset in normal use).

kill-step:E:S     SIGKILL this process at epoch E, step S (before the step runs)
kill-once:E:S:F   the same, in the first process to get there only (it creates file F)
usr2-once:E:S:F   SIGUSR2 instead (SLURM's time-out / preemption signal under submitit), once
term-once:E:S:F   SIGTERM instead (a cancelled job, or torchrun stopping its workers), once
kill-rename:E     SIGKILL after epoch E's checkpoint is written, before it is renamed into place
enospc:E          the disk is full when epoch E's checkpoint is written (OSError ENOSPC)
nan:E:PATTERN     the loss of runs whose name matches the glob PATTERN becomes NaN from epoch E
disk-free:BYTES   `bench doctor` sees only BYTES free in the work directory

Under DDP, $KDBENCH_FAULT_RANK=R limits the fault to rank R (every rank when unset).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal

ENV = "KDBENCH_FAULT"
RANK_ENV = "KDBENCH_FAULT_RANK"


def _spec() -> list[str]:
    rank = os.environ.get(RANK_ENV)
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return []
    value = os.environ.get(ENV, "")
    return value.split(":") if value else []


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def check(point: str, epoch: int, step: int = 0, path: str | None = None) -> None:
    spec = _spec()
    if not spec:
        return
    if point == "rename" and spec[0] == "enospc" and epoch == int(spec[1]):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    if point == "step" and spec[0] == "kill-step" and (epoch, step) == (int(spec[1]), int(spec[2])):
        _kill()
    once = {"kill-once": signal.SIGKILL, "usr2-once": signal.SIGUSR2, "term-once": signal.SIGTERM}
    if point == "step" and spec[0] in once and (epoch, step) == (int(spec[1]), int(spec[2])):
        try:
            os.close(os.open(":".join(spec[3:]), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), once[spec[0]])
    if point == "rename" and spec[0] == "kill-rename" and epoch == int(spec[1]):
        _kill()


def nan_from_epoch(run_name: str) -> int | None:
    spec = _spec()
    if len(spec) >= 3 and spec[0] == "nan" and fnmatch.fnmatch(run_name, ":".join(spec[2:])):
        return int(spec[1])
    return None


def disk_free(path) -> int:
    """Free bytes at `path`; `disk-free:BYTES` pretends there are only BYTES (a quota)."""
    import shutil

    spec = _spec()
    if spec and spec[0] == "disk-free":
        return int(spec[1])
    return shutil.disk_usage(path).free
