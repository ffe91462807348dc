"""Per-epoch training checkpoints, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bench import faults


def atomic_save(obj: Any, path: Path, *, fault_epoch: int | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    if fault_epoch is not None:
        faults.check("rename", fault_epoch)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    # Our own files hold tensors, numbers and strings only, so weights_only loading works.
    return torch.load(path, map_location="cpu", weights_only=True)


def remove(path: Path) -> None:
    """Delete a checkpoint and any temp file a killed writer left beside it."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
