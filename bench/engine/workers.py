"""`bench run --workers N`: N worker processes on one machine pull the cells of one matrix.

The parent binds the data and fetches released teachers once, starts the workers (each pinned to
one GPU with `--gpus`, K of them per GPU with `--workers-per-gpu`), draws one progress bar from
their events, passes Ctrl-C / SIGTERM on (every run stops at a step boundary, KILLED and
resumable) and replaces a worker that dies (its claim is released by the system, so the
replacement, or any other worker, takes its cell over and resumes it from the last checkpoint).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import torch
from tqdm import tqdm

from bench.engine.binding import bind_data
from bench.engine.published_teachers import fetch_published_teachers
from bench.engine.runner import (
    BLOCKED,
    DONE,
    FAILED_STATE,
    WRITTEN_FOLDERS,
    MatrixSummary,
    StopFlag,
    plan,
    run_worker,
    settled,
)
from bench.errors import SpecError
from bench.files import remove_orphan_temps
from bench.spec import Matrix
from bench.store.claims import check_claims, open_claims
from bench.store.trackers import reconnect

MAX_REPLACEMENTS_PER_WORKER = 3  # a worker that keeps dying is a fault to report, not to loop on


@dataclass(frozen=True)
class WorkerSlot:
    index: int
    device: str  # "cpu" or "cuda"
    visible_gpu: str | None  # CUDA_VISIBLE_DEVICES of the worker
    # CPU workers share the cores (results on a CPU depend on the thread count: it is logged
    # with each run as the torch_threads tag); None: torch's default
    threads: int | None = None


def parse_gpus(text: str | None) -> list[str]:
    if not text:
        return []
    gpus = [part.strip() for part in text.split(",")]
    if not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise SpecError(f"--gpus '{text}': expected distinct GPU indices, e.g. 0,1,2,3")
    return gpus


def worker_slots(
    workers: int | None, gpus: list[str], per_gpu: int, device: str
) -> list[WorkerSlot]:
    """With GPUs: `per_gpu` workers on each (one device visible to each); else `workers` on
    `device`."""
    if per_gpu < 1:
        raise SpecError(f"--workers-per-gpu {per_gpu}: expected 1 or more")
    if gpus:
        if workers is not None and workers != len(gpus) * per_gpu:
            raise SpecError(
                f"--workers {workers} with --gpus {','.join(gpus)} and --workers-per-gpu "
                f"{per_gpu}: the GPUs give {len(gpus) * per_gpu} workers; leave --workers out"
            )
        return [WorkerSlot(i, "cuda", gpus[i // per_gpu]) for i in range(len(gpus) * per_gpu)]
    if workers is None or workers < 1:
        raise SpecError(f"--workers {workers}: expected 1 or more")
    threads = max(1, (os.cpu_count() or 1) // workers) if device == "cpu" else None
    return [WorkerSlot(i, device, None, threads) for i in range(workers)]


def _worker_main(slot, matrix, address, workdir, claims_uri, options, sender, stop_event, parent):
    if slot.visible_gpu is not None:  # before anything initialises CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpu
    if slot.threads is not None:
        torch.set_num_threads(slot.threads)
    stop = StopFlag(stop_event, parent=parent)
    stop.install()
    tracker = reconnect(address)
    claims = open_claims(Path(workdir), claims_uri)

    def send(event: dict) -> None:
        if stop.orphaned:
            return  # no one reads the pipe: the run stops at its next step boundary
        try:
            sender.send(event | {"worker": slot.index, "pid": os.getpid()})
        except OSError:  # the parent is gone (a broken pipe before getppid() shows it)
            stop.requested = True

    summary = run_worker(
        matrix,
        tracker=tracker,
        workdir=Path(workdir),
        device=torch.device(slot.device),
        claims=claims,
        stop=stop,
        on_event=send,
        log=lambda line: send({"event": "log", "line": line}),
        **options,
    )
    send({"event": "summary", "summary": summary})
    with contextlib.suppress(OSError):
        sender.close()


class _Progress:
    """One bar for the matrix: cells done / running / left, summed img/s, ETA."""

    def __init__(self, total: int, name: str):
        self.bar = tqdm(total=total, desc=name, unit="cell", dynamic_ncols=True, disable=None)
        self.running: dict[int, tuple[str, float]] = {}  # worker -> (its run, last img/s)

    def on(self, event: dict) -> None:
        kind, worker = event["event"], event["worker"]
        if kind == "start":
            self.running[worker] = (event["name"], 0.0)
        elif kind == "epoch":
            self.running[worker] = (event["name"], event["img_per_s"])
        elif kind == "done":
            self.running.pop(worker, None)
            self.bar.update(1)
        self._show()

    def lost(self, worker: int) -> None:
        self.running.pop(worker, None)
        self._show()

    def _show(self) -> None:
        speed = sum(rate for _, rate in self.running.values())
        left = max(0, self.bar.total - self.bar.n - len(self.running))
        self.bar.set_postfix_str(f"running {len(self.running)}, left {left}, {speed:.0f} img/s")

    def close(self) -> None:
        self.bar.close()


def run_workers(
    matrix: Matrix,
    *,
    tracker,
    workdir: Path,
    slots: list[WorkerSlot],
    claims_uri: str | None = None,
    retry_failed: bool = False,
    cells=None,
    poll_seconds: float = 2.0,
    log: Callable[[str], None] = tqdm.write,
) -> MatrixSummary:
    workdir = Path(workdir)
    check_claims(workdir, claims_uri)  # a bad claims URI is one line before anything is done
    for folder in WRITTEN_FOLDERS:
        remove_orphan_temps(workdir / folder)
    matrix = bind_data(matrix, workdir)
    planned = plan(matrix, tracker, workdir, cells)
    summary = settled(planned, retry_failed)  # the workers report only what they ran
    left = [c for c in planned if c.state != DONE]
    if not retry_failed:
        left = [c for c in left if c.state not in (FAILED_STATE, BLOCKED)]
    fetch_published_teachers(matrix, workdir, [c.run for c in left])
    log(
        f"matrix {matrix.name}: {len(left)} of {len(planned)} cells to do, {len(slots)} workers on "
        f"{socket.gethostname()}" + _left_alone(summary)
    )
    context = multiprocessing.get_context("spawn")
    stop_event = context.Event()
    options = {"retry_failed": retry_failed, "cells": cells, "poll_seconds": poll_seconds}

    def start(slot: WorkerSlot):
        # a pipe per worker: a worker killed while writing can only break its own
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main,
            args=(slot, matrix, tracker.address(), str(workdir), claims_uri, options, sender,
                  stop_event, os.getpid()),
            name=f"kdbench-worker-{slot.index}",
        )  # fmt: skip
        process.start()
        sender.close()
        return process, receiver

    def on_signal(signum, frame):
        stop_event.set()  # workers also see the event; a terminal's Ctrl-C reaches them too

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    progress = _Progress(len(left), matrix.name)
    workers = {slot.index: (slot, *start(slot)) for slot in slots}
    replacements = dict.fromkeys(workers, 0)
    done: set[int] = set()  # workers that sent their summary or gave up

    def handle(event: dict) -> None:
        if event["event"] == "log":
            log(f"[worker {event['worker']}] {event['line']}")
        elif event["event"] == "summary":
            _merge(summary, event["summary"])
            done.add(event["worker"])
        else:
            progress.on(event)

    try:
        while len(done) < len(workers):
            live = {receiver: index for index, (_, _, receiver) in workers.items()
                    if index not in done}  # fmt: skip
            for receiver in wait(list(live), timeout=0.5):
                index = live[receiver]
                try:
                    handle(receiver.recv())
                except (EOFError, OSError, pickle.UnpicklingError):
                    _, process, _ = workers[index]
                    process.join(timeout=10)
                    if index not in done:
                        _lost(index, workers, replacements, done, stop_event, start, progress,
                              summary, log)  # fmt: skip
    finally:
        progress.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        for _, process, _ in workers.values():
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return summary


def _lost(index, workers, replacements, done, stop_event, start, progress, summary, log) -> None:
    """A worker's pipe closed before its summary: it died. Replace it, unless stopping."""
    slot, process, receiver = workers[index]
    receiver.close()
    code = process.exitcode
    progress.lost(index)  # its cell is announced again by whoever resumes it
    if stop_event.is_set() or replacements[index] >= MAX_REPLACEMENTS_PER_WORKER:
        log(f"worker {index} (pid {process.pid}) exited with code {code}")
        summary.failed.append((f"worker {index}", f"exited with code {code}"))
        done.add(index)
        return
    replacements[index] += 1
    log(
        f"worker {index} (pid {process.pid}) died (exit code {code}); a new worker takes over "
        "its cell from the last checkpoint"
    )
    workers[index] = (slot, *start(slot))


def _left_alone(summary: MatrixSummary) -> str:
    if not summary.failed and not summary.blocked:
        return ""
    return (
        f" ({len(summary.failed)} failed and {len(summary.blocked)} blocked left alone: "
        "--retry-failed reruns them)"
    )


def _merge(total: MatrixSummary, part: MatrixSummary) -> None:
    for name in ("trained", "skipped", "failed", "blocked", "interrupted", "claimed"):
        getattr(total, name).extend(getattr(part, name))
