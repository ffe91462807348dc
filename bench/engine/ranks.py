"""The ranks > 0 of a DDP group: train what rank 0 orders, until it says the matrix is done."""

from __future__ import annotations

from pathlib import Path

import model_zoo
from bench.engine.distributed import Group
from bench.engine.execute import GroupAborted, LoadedTeacher, TrainOrder, follow_run, loaders_for
from bench.engine.runner import _StopFlag
from bench.engine.teachers import load_frozen

DONE = "done"  # rank 0's last order


def _teacher(order: TrainOrder, device, workdir: Path, loaded: dict) -> LoadedTeacher | None:
    """The teacher rank 0 trains against, from the same file, checked by its sha256."""
    if order.teacher is None:
        return None
    arch, path, sha = order.teacher
    if sha not in loaded:
        run = order.run
        num_classes = run.data.num_classes or loaders_for(run, device, workdir).num_classes
        channels_last = run.execution.memory_format == "channels_last"
        model, found = load_frozen(arch, None if path is None else Path(path), num_classes,
                                   device, channels_last)  # fmt: skip
        if found != sha:
            raise GroupAborted(
                f"teacher {arch}: rank 0 loaded sha256 {sha[:12]}, this rank reads "
                f"{found[:12]} from {path or model_zoo.__name__}; the ranks must share the files"
            )
        loaded[sha] = LoadedTeacher(arch, model, sha, float("nan"), path)
    return loaded[sha]


def follow(group: Group, *, workdir: Path, device) -> None:
    """Take rank 0's orders until DONE; a SIGTERM here stops the whole group at the next step
    where the ranks agree (the stop flag is summed over the ranks)."""
    stop = _StopFlag()
    restore = stop.install()
    loaded: dict = {}
    try:
        while (order := group.receive()) != DONE:
            follow_run(order, group=group, workdir=Path(workdir), device=device,
                       teacher=_teacher(order, device, Path(workdir), loaded),
                       stop_requested=lambda: stop.requested)  # fmt: skip
    finally:
        restore()
