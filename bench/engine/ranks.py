"""The ranks > 0 of a DDP group: train what rank 0 orders, until it says the matrix is done."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.engine.distributed import Group
from bench.engine.execute import TrainOrder, follow_run, loaders_for
from bench.engine.lifecycle import GroupAborted
from bench.engine.stop import StopFlag
from bench.engine.teachers import LoadedTeacher, load_frozen

NO_MORE_ORDERS = "done"  # rank 0's last order to the other ranks


def _teacher(order: TrainOrder, device, workdir: Path, loaded: dict,
             group: Group) -> LoadedTeacher | None:
    """The teacher rank 0 trains against, from the same file, checked by its sha256."""
    if order.teacher is None:
        return None
    arch, path, sha = order.teacher
    if sha not in loaded:
        run = order.run
        # this rank's loaders (the ones its run trains on), not a second, whole set
        num_classes = run.data.num_classes or loaders_for(run, device, workdir,
                                                          group.shard).num_classes
        channels_last = run.execution.memory_format == "channels_last"
        model, found = load_frozen(arch, None if path is None else Path(path), num_classes,
                                   device, channels_last)
        if found != sha:
            raise GroupAborted(
                f"teacher {arch}: rank 0 loaded sha256 {sha[:12]}, this rank reads "
                f"{found[:12]} from {path or 'its pretrained weights'}; the ranks must share the "
                "files"
            )
        loaded[sha] = LoadedTeacher(arch, model, sha, float("nan"), path)
    return loaded[sha]


def follow(group: Group, *, workdir: Path, device) -> None:
    """Take rank 0's orders until NO_MORE_ORDERS; a SIGTERM here stops the whole group at the
    next step where the ranks agree (the stop flag is summed over the ranks)."""
    stop = StopFlag()
    restore = stop.install()
    loaded: dict = {}
    try:
        while (order := group.receive()) != NO_MORE_ORDERS:
            follow_run(order, group=group, workdir=Path(workdir), device=device,
                       teacher=_teacher(order, device, Path(workdir), loaded, group),
                       stop_requested=lambda: stop.requested)
    finally:
        restore()


def lead_or_follow(group: Group, *, workdir: Path, device, work: Callable[[], object]):
    """Rank 0 does `work` (the matrix, the store) and then tells the others it is done; the
    other ranks follow its orders (None). The group is left either way."""
    try:
        if not group.is_main:
            follow(group, workdir=workdir, device=device)
            return None
        try:
            return work()
        finally:
            group.post(NO_MORE_ORDERS)
    finally:
        group.close()
