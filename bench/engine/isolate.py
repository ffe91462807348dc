"""`bench run --isolate`: each cell in a fresh process, so a device error or leaked state cannot
touch the next cell."""

from __future__ import annotations

import multiprocessing
import queue
from pathlib import Path

import torch

from bench.engine.execute import execute_run
from bench.engine.lifecycle import Outcome
from bench.engine.stop import StopFlag
from bench.engine.teachers import TeacherInterrupted, prepare_teacher
from bench.spec import RunSpec
from bench.store.trackers import FAILED, KILLED, reconnect


def _isolated_child(run, teacher_spec, tracker_address, workdir, device, results) -> None:
    tracker = reconnect(tracker_address)
    device = torch.device(device)
    stop = StopFlag()
    stop.install()
    teacher = None
    try:
        if teacher_spec is not None:
            teacher = prepare_teacher(
                teacher_spec,
                run,
                tracker=tracker,
                workdir=workdir,
                device=device,
                log=lambda _: None,
                stop_requested=lambda: stop.requested,
            )
        outcome = execute_run(
            run,
            tracker=tracker,
            workdir=workdir,
            device=device,
            teacher=teacher,
            stop_requested=lambda: stop.requested,
        )
    except TeacherInterrupted as exc:
        outcome = Outcome(KILLED, None, {}, str(exc))
    except Exception as exc:  # reported to the parent, which records the cell as failed
        outcome = Outcome(FAILED, None, {}, f"{type(exc).__name__}: {exc}".splitlines()[0])
    results.put(outcome)


def execute_isolated(run: RunSpec, *, tracker, workdir: Path, device, stop) -> Outcome:
    """The cell in a fresh process: a device error or leaked state cannot touch the next cell."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_isolated_child,
        args=(run, run.teacher, tracker.address(), Path(workdir), str(device), results),
    )
    child.start()
    stop.child = child
    try:
        while child.is_alive() or not results.empty():
            try:
                return results.get(timeout=1.0)
            except queue.Empty:
                continue
    finally:
        child.join()
        stop.child = None
    return Outcome(FAILED, None, {}, f"worker process died (exit code {child.exitcode})")
