"""Committing a file so that a reader sees the old content or the new one, never a part:
a temp file beside the target, fsync, rename over the target, fsync of the folder."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside `path` for a writer that wants a file name (FFCV, a copy); committed
    when the block ends without an error, removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO]:
    """An open temp file beside `path` ("w" or "wb"), committed as `atomic_path` does."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_with_temps(path: Path) -> None:
    """Delete `path` and any temp file a killed writer left beside it."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def quarantine(path: Path) -> Path:
    """Move a file that fails to load aside as `<name>.corrupt-<UTC time>`, keeping it for a
    post-mortem instead of failing on it again at every rerun; returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, target)
    return target


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Delete the `.name.tmp-PID` files under `folder` whose writer process is gone."""
    removed = []
    for tmp in Path(folder).rglob(".*.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[-1]
        if tmp.is_file() and pid.isdigit() and not alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_problem(exc: BaseException) -> str | None:
    """One line for a full, read-only or forbidden disk (naming the path and the free space),
    or None for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in _STORAGE_ERRNOS:
        return None
    path = Path(exc.filename) if exc.filename else None
    where = f" writing {path}" if path else ""
    free = ""
    probe = path
    while probe is not None and not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe is not None:
        try:
            free = f" ({shutil.disk_usage(probe).free / 2**20:.0f} MiB free there)"
        except OSError:
            pass
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system"}.get(exc.errno, "permission denied")
    return (
        f"{what}{where}{free}; free space or fix the permissions, then rerun the same command "
        "to resume"
    )


def within(folder: Path, *parts: str) -> Path:
    """`folder / parts`, refused (ValueError) unless it stays inside `folder`: names from a
    matrix file (its name, labels, models) must never write elsewhere."""
    root = Path(folder).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"{'/'.join(parts)!r} leads outside {folder}")
    return path
