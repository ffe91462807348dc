"""Per-epoch training checkpoints, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.engine import faults
from bench.errors import BenchError
from bench.files import atomic_write, remove_with_temps


class CheckpointUnreadable(BenchError):
    """A checkpoint of ours that cannot be loaded (truncated, damaged)."""


def atomic_save(obj: Any, path: Path, *, fault_epoch: int | None = None) -> None:
    with atomic_write(Path(path), "wb") as handle:
        torch.save(obj, handle)
        if fault_epoch is not None:
            handle.flush()
            faults.check("rename", fault_epoch, path=str(path))


def load(path: Path) -> dict:
    # Our own files hold tensors, numbers and strings only, so weights_only loading works.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncation and damage surface as many error types
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise CheckpointUnreadable(f"{path}: {type(exc).__name__} {first}".strip()) from None
    if not isinstance(state, dict):
        raise CheckpointUnreadable(f"{path}: holds a {type(state).__name__}, not a checkpoint")
    return state


def remove(path: Path) -> None:
    """Delete a checkpoint and any temp file a killed writer left beside it."""
    remove_with_temps(path)
