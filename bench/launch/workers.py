"""`bench run --workers N`: N worker processes on one machine pull the cells of one matrix.

The parent binds the data and fetches released teachers once, starts the workers (each pinned to
one GPU with `--gpus`, K of them per GPU with `--workers-per-gpu`), draws one progress bar from
their events, passes Ctrl-C / SIGTERM on (every run stops at a step boundary, KILLED and
resumable) and replaces a worker that dies (its claim is released by the system, so the
replacement, or any other worker, takes its cell over and resumes it from the last checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path

import torch
from tqdm import tqdm

from bench.engine.cells import MatrixSummary
from bench.engine.cores import threads_for
from bench.engine.loop import run_cells
from bench.engine.stop import StopFlag
from bench.engine.watch import CellWatcher
from bench.errors import SpecError
from bench.launch.registry import Executor, register_executor
from bench.launch.start import Launch, start_matrix
from bench.output import guard_output
from bench.spec import Matrix, RunSpec
from bench.store.claims import open_claims
from bench.store.trackers import StoreUnavailable, reconnect

MAX_REPLACEMENTS_PER_WORKER = 3  # a worker that keeps dying is a fault to report, not to loop on
STORE_LOST_EXIT = 75  # EX_TEMPFAIL: a worker left because the tracking server stopped answering
# a worker that lost the store is started again after 5, 10, 20, 40, 80 s (3 min in all, past
# a server restart), then the matrix ends, every run resumable; $KDBENCH_STORE_RETRY_S sets the
# first wait
STORE_RETRIES = 5


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


class _Pipe(CellWatcher):
    """A worker's events, sent to its parent: the parent draws one bar from all of them."""

    def __init__(self, sender, slot: WorkerSlot, stop: StopFlag):
        self._sender, self._slot, self._stop = sender, slot, stop

    def send(self, event: dict) -> None:
        if self._stop.orphaned:
            return  # no one reads the pipe: the run stops at its next step boundary
        try:
            self._sender.send(event | {"worker": self._slot.index, "pid": os.getpid()})
        except OSError:  # the parent is gone (a broken pipe before getppid() shows it)
            self._stop.requested = True

    def log(self, line: str) -> None:
        self.send({"event": "log", "line": line})

    def start(self, run: RunSpec) -> None:
        self.send({"event": "start", "name": run.name, "epochs": run.recipe.epochs})

    def epoch(self, run: RunSpec, epoch: int, metrics: dict[str, float]) -> None:
        self.send({"event": "epoch", "name": run.name, "epoch": epoch,
                   "img_per_s": metrics["img_per_s"]})

    def done(self, run: RunSpec, status: str) -> None:
        self.send({"event": "done", "name": run.name, "status": status})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sender.close()


def _worker_main(slot, matrix, address, workdir, claims_uri, options, sender, stop_event, parent):
    guard_output()
    if slot.visible_gpu is not None:  # before anything initialises CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpu
    if slot.threads is not None:
        torch.set_num_threads(slot.threads)
    stop = StopFlag(stop_event, parent=parent)
    stop.install()
    pipe = _Pipe(sender, slot, stop)
    try:
        summary = run_cells(matrix, tracker=reconnect(address), workdir=Path(workdir),
                            device=torch.device(slot.device),
                            claims=open_claims(Path(workdir), claims_uri), stop=stop,
                            alone=False, watcher=pipe, **options)
    except StoreUnavailable as exc:  # its run stays resumable; the parent tries again later
        pipe.send({"event": "store_lost", "line": str(exc)})
        pipe.close()
        os._exit(STORE_LOST_EXIT)
    pipe.send({"event": "summary", "summary": summary})
    pipe.close()


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
    started = start_matrix(matrix, tracker=tracker, workdir=workdir, cells=cells,
                           retry_failed=retry_failed, claims_uri=claims_uri)
    summary = started.summary  # the workers report only what they ran
    log(
        f"matrix {matrix.name}: {len(started.todo)} of {len(started.planned)} cells to do, "
        f"{len(slots)} workers on {socket.gethostname()}" + _left_alone(summary)
    )
    with contextlib.ExitStack() as held:
        cpu = [s for s in slots if s.device == "cpu" and s.threads is not None]
        if cpu:
            threads, others = held.enter_context(threads_for(len(cpu)))
            if others:
                log(f"other kdbench parents hold {others} threads of this machine's "
                    f"{os.cpu_count()} cores: {len(cpu)} workers take {threads} each")
            slots = [replace(s, threads=threads) if s in cpu else s for s in slots]
        options = {"retry_failed": retry_failed, "cells": cells, "poll_seconds": poll_seconds}
        return _supervise(started.matrix, tracker=tracker, workdir=workdir, slots=slots,
                          claims_uri=claims_uri, options=options, todo=len(started.todo),
                          summary=summary, log=log)


def _supervise(matrix: Matrix, *, tracker, workdir: Path, slots: list[WorkerSlot],
               claims_uri: str | None, options: dict, todo: int, summary: MatrixSummary,
               log: Callable[[str], None]) -> MatrixSummary:
    """Start the workers, draw their progress, pass signals on, replace the ones that die."""
    context = multiprocessing.get_context("spawn")
    stop_event = context.Event()

    def start(slot: WorkerSlot):
        # a pipe per worker: a worker killed while writing can only break its own
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main,
            args=(slot, matrix, tracker.address(), str(workdir), claims_uri, options, sender,
                  stop_event, os.getpid()),
            name=f"kdbench-worker-{slot.index}",
        )
        process.start()
        sender.close()
        return process, receiver

    def on_signal(signum, frame):
        stop_event.set()  # workers also see the event; a terminal's Ctrl-C reaches them too

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    crew = _Crew(start, stop_event, _Progress(todo, matrix.name), summary, log)
    try:
        for slot in slots:
            crew.start(slot)
        crew.supervise()
    finally:
        crew.progress.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        crew.join()
    return summary


class _Crew:
    """The live workers of one parent: their pipes, their replacements when they die, and
    their restarts, later and later, when the tracking server stops answering."""

    def __init__(self, start, stop_event, progress: _Progress, summary: MatrixSummary, log):
        self._start, self.stop_event, self.progress = start, stop_event, progress
        self.summary, self.log = summary, log
        self.workers: dict[int, tuple] = {}  # index -> (slot, process, receiver)
        self.replacements: dict[int, int] = {}
        self.store_tries: dict[int, int] = {}
        self.waiting: dict[int, tuple[float, WorkerSlot]] = {}  # restart due at monotonic time
        self.done: set[int] = set()  # workers that sent their summary or gave up
        self.store_lost: dict[int, str] = {}  # worker -> its last words: a store outage

    def start(self, slot: WorkerSlot) -> None:
        self.workers[slot.index] = (slot, *self._start(slot))
        self.replacements.setdefault(slot.index, 0)
        self.store_tries.setdefault(slot.index, 0)

    def supervise(self) -> None:
        while len(self.done) < len(self.workers):
            now = time.monotonic()
            for index, (due, slot) in list(self.waiting.items()):
                if self.stop_event.is_set():
                    del self.waiting[index]
                    self.done.add(index)
                elif now >= due:
                    del self.waiting[index]
                    self.start(slot)
            live = {receiver: index for index, (_, _, receiver) in self.workers.items()
                    if index not in self.done and index not in self.waiting}
            for receiver in wait(list(live), timeout=0.5):
                index = live[receiver]
                try:
                    self._handle(receiver.recv())
                except (EOFError, OSError, pickle.UnpicklingError):
                    _, process, _ = self.workers[index]
                    process.join(timeout=10)
                    if index not in self.done:
                        self._lost(index)

    def _handle(self, event: dict) -> None:
        kind, index = event["event"], event["worker"]
        if kind == "log":
            self.log(f"[worker {index}] {event['line']}")
        elif kind == "store_lost":
            self.store_lost[index] = event["line"]
        elif kind == "summary":
            self.summary.merge(event["summary"])
            self.done.add(index)
        else:
            if kind == "epoch":  # the store answers again
                self.store_tries[index] = 0
            self.progress.on(event)

    def _lost(self, index: int) -> None:
        """A worker's pipe closed before its summary: it died, or left because the store did
        not answer. Start another (later and later for the store), unless stopping."""
        slot, process, receiver = self.workers[index]
        receiver.close()
        code = process.exitcode
        self.progress.lost(index)  # its cell is announced again by whoever resumes it
        if index in self.store_lost or code == STORE_LOST_EXIT:
            line = self.store_lost.pop(index, "the tracking server stopped answering")
            self._retry_store(index, slot, line)
            return
        if self.stop_event.is_set() or self.replacements[index] >= MAX_REPLACEMENTS_PER_WORKER:
            self.log(f"worker {index} (pid {process.pid}) exited with code {code}")
            self.summary.failed.append((f"worker {index}", f"exited with code {code}"))
            self.done.add(index)
            return
        self.replacements[index] += 1
        self.log(
            f"worker {index} (pid {process.pid}) died (exit code {code}); a new worker takes "
            "over its cell from the last checkpoint"
        )
        self.start(slot)

    def _retry_store(self, index: int, slot: WorkerSlot, line: str) -> None:
        tries = self.store_tries[index]
        if self.stop_event.is_set() or tries >= STORE_RETRIES:
            self.log(f"[worker {index}] {line}; gave up after {tries} tries")
            self.summary.unreachable.append(f"worker {index}")
            self.done.add(index)
            return
        delay = float(os.environ.get("KDBENCH_STORE_RETRY_S", "5")) * 2**tries
        self.store_tries[index] = tries + 1
        self.log(f"[worker {index}] {line}; trying again in {delay:.0f} s "
                 f"({tries + 1} of {STORE_RETRIES})")
        self.waiting[index] = (time.monotonic() + delay, slot)

    def join(self) -> None:
        for _, process, _ in self.workers.values():
            process.join(timeout=60)
            if process.is_alive():
                process.kill()


def _left_alone(summary: MatrixSummary) -> str:
    if not summary.failed and not summary.blocked:
        return ""
    return (
        f" ({len(summary.failed)} failed and {len(summary.blocked)} blocked left alone: "
        "--retry-failed reruns them)"
    )


@register_executor("workers")
class WorkerProcesses(Executor):
    help = "worker processes on this machine pulling the cells, claims keeping each to one"
    order = 20

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--workers", type=int,
            help="worker processes on this machine pulling the matrix's cells (default 1: this "
            "process); claims keep each cell to one worker",
        )
        group.add_argument("--gpus", metavar="0,1,...", help="CUDA: workers pinned to these GPUs")
        group.add_argument("--workers-per-gpu", type=int, default=1, metavar="K",
                           help="with --gpus: K runs per GPU")

    def wanted(self, args: argparse.Namespace) -> bool:
        return args.workers is not None or bool(args.gpus) or bool(args.claims)

    def check(self, args: argparse.Namespace) -> None:
        if args.workers is not None and args.workers < 1:
            raise SpecError(f"--workers {args.workers}: expected 1 or more")
        gpus = parse_gpus(args.gpus)
        present = torch.cuda.device_count()
        missing = [g for g in gpus if int(g) >= present]
        if missing:
            raise SpecError(
                f"--gpus {args.gpus}: this machine has {present} CUDA device(s) (indices "
                f"0..{present - 1}); GPU {', '.join(missing)} does not exist"
                if present
                else f"--gpus {args.gpus}: this machine has no CUDA device"
            )

    def how(self, args: argparse.Namespace) -> str:
        if args.gpus:
            return f"{len(args.gpus.split(','))} GPU(s) x {args.workers_per_gpu} worker(s)"
        return f"{args.workers or 1} worker process(es)"

    def run(self, launch: Launch) -> int:
        args = launch.args
        slots = worker_slots(  # bad values are one line before the store is opened
            args.workers if args.workers is not None else None if args.gpus else 1,
            parse_gpus(args.gpus), args.workers_per_gpu, launch.device.type,
        )
        tracker = launch.tracker()
        launch.announce(tracker)
        return launch.finish(run_workers(
            launch.matrix, tracker=tracker, workdir=launch.workdir, slots=slots,
            claims_uri=args.claims, retry_failed=launch.retry_failed, cells=launch.cells,
        ))
