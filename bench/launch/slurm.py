"""`bench run --executor slurm`: one submitit job array whose tasks are matrix workers.

Each array task is the same worker loop as `--workers` (claims keep each cell to one task). On
preemption or time-out SLURM signals the task; submitit calls `checkpoint`, which requeues the
task as it is, and the requeued task resumes the interrupted run from its last epoch checkpoint
(a claim dies with its holder, so any task may take the cell over). The work directory must be
on a file system every node sees (checkpoints, teachers, data); with a server store, claims go
through PostgreSQL (`--claims` / $KDBENCH_CLAIMS).

An array task with several GPUs (`--slurm-gpus-per-task G`, one process per GPU) or nodes
(`--slurm-nodes M`) is one DDP group of G x M ranks training each run it takes: submitit's
`TorchDistributedEnvironment` sets the rendezvous, rank 0 is the worker, the others follow it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from submitit.helpers import Checkpointable

from bench.engine import distributed, ranks
from bench.engine.binding import bind_present_data
from bench.engine.cells import chosen, plan, runnable
from bench.engine.loop import run_cells
from bench.engine.stop import StopFlag
from bench.engine.watch import CellWatcher
from bench.errors import SpecError
from bench.launch.registry import Executor, register_executor
from bench.launch.start import Launch, start_matrix
from bench.spec import Matrix
from bench.store.claims import describe_claims, open_claims
from bench.store.trackers import describe_store, reconnect

# SLURM sends the signal this long before the time limit; an epoch of a CIFAR cell is shorter
SIGNAL_DELAY_S = 120


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    timeout_min: int = 24 * 60
    array_parallelism: int = 64
    tasks: int | None = None  # None: one per cell to do, at most `array_parallelism`
    nodes: int = 1  # nodes of each array task: one DDP group across them

    @property
    def ranks_per_node(self) -> int:
        return max(self.gpus_per_task, 1)

    @property
    def world_size(self) -> int:
        """The DDP ranks of each array task (1: a plain worker)."""
        return self.nodes * self.ranks_per_node

    def executor_parameters(self, cluster: str) -> dict[str, Any]:
        parameters: dict[str, Any] = {"timeout_min": self.timeout_min,
                                      "tasks_per_node": self.ranks_per_node,
                                      "nodes": self.nodes}
        if cluster == "slurm":
            parameters.update(slurm_array_parallelism=self.array_parallelism,
                              slurm_signal_delay_s=SIGNAL_DELAY_S)
            if self.gpus_per_task:  # 0: CPU-only tasks, no GPU line at all
                parameters["gpus_per_node"] = self.gpus_per_task
            if self.partition:
                parameters["slurm_partition"] = self.partition
            if self.cpus_per_task:
                parameters["cpus_per_task"] = self.cpus_per_task
        return parameters


class MatrixWorker(Checkpointable):
    """A job-array task: the worker loop on this node's device. Requeued as is on time-out."""

    def __init__(self, matrix: Matrix, workdir: str, address, claims_uri: str | None,
                 options: dict) -> None:
        self.matrix, self.workdir, self.address = matrix, workdir, address
        self.claims_uri, self.options = claims_uri, options

    def __call__(self, task: int) -> dict[str, int]:
        import submitit

        if submitit.JobEnvironment().num_tasks > 1:  # this array task is one DDP group
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        group = distributed.from_environment(device.type)
        device = distributed.device_for(group, device)
        result = ranks.lead_or_follow(group, workdir=Path(self.workdir), device=device,
                                      work=lambda: self._work(task, device, group))
        return {} if result is None else result

    def _work(self, task: int, device: torch.device, group) -> dict[str, int]:
        stop = StopFlag()
        stop.install()  # SIGTERM (a cancelled or killed job): stop at a step boundary, resumable
        summary = run_cells(
            self.matrix, tracker=reconnect(self.address), workdir=Path(self.workdir),
            device=device, claims=open_claims(Path(self.workdir), self.claims_uri), stop=stop,
            alone=False, watcher=_TaskLog(task), group=group, **self.options,
        )
        return summary.counts()


class _TaskLog(CellWatcher):
    def __init__(self, task: int):
        self.task = task

    def log(self, line: str) -> None:
        print(f"[task {self.task}] {line}", flush=True)


def submit(
    matrix: Matrix,
    *,
    tracker,
    workdir: Path,
    options: SlurmOptions,
    claims_uri: str | None = None,
    retry_failed: bool = False,
    cells=None,
    cluster: str = "slurm",
):
    """Submit the job array; returns (its jobs, the cells left)."""
    import submitit

    workdir = Path(workdir)
    started = start_matrix(matrix.on_ranks(options.world_size), tracker=tracker,
                           workdir=workdir, cells=cells, retry_failed=retry_failed,
                           claims_uri=claims_uri)  # before any task starts
    matrix, left = started.matrix, len(started.todo)
    if left == 0:
        return [], 0
    # a task is requeued at most 3 times on time-out (submitit's default), without limit on
    # preemption
    executor = submitit.AutoExecutor(folder=workdir / "slurm" / "%j", cluster=cluster)
    executor.update_parameters(name=f"kdbench-{matrix.name}",
                               **options.executor_parameters(cluster))
    worker = MatrixWorker(matrix, str(workdir), tracker.address(), claims_uri,
                          {"retry_failed": retry_failed, "cells": cells})
    tasks = options.tasks or min(left, options.array_parallelism)
    return executor.map_array(worker, list(range(tasks))), left


def dry_run_text(
    matrix_name: str, left: int, options: SlurmOptions, workdir: Path, shared: str | None = None
) -> str:
    """`shared`: why the store or the claims may not be shared by the nodes (None: they are)."""
    """What `--executor slurm` would submit: the array and its sbatch script."""
    from submitit.slurm.slurm import _make_sbatch_string

    tasks = options.tasks or min(left, options.array_parallelism)
    if tasks == 0:
        return f"matrix {matrix_name}: nothing to submit, every cell is done"
    parameters = {
        "job_name": f"kdbench-{matrix_name}",
        "time": options.timeout_min,
        "array_parallelism": options.array_parallelism,
        "signal_delay_s": SIGNAL_DELAY_S,
        "map_count": tasks,
        "ntasks_per_node": options.ranks_per_node,
        "nodes": options.nodes,
    }
    if options.gpus_per_task:
        parameters["gpus_per_node"] = options.gpus_per_task
    if options.partition:
        parameters["partition"] = options.partition
    if options.cpus_per_task:
        parameters["cpus_per_task"] = options.cpus_per_task
    command = shlex.join([sys.executable, "-u", "-m", "submitit.core._submit",
                          str(workdir / "slurm" / "%j")])
    script = _make_sbatch_string(command=command, folder=workdir / "slurm" / "%j", **parameters)
    ddp = (
        f"; each task one DDP group of {options.world_size} ranks ({options.nodes} nodes x "
        f"{options.ranks_per_node})"
        if options.world_size > 1
        else ""
    )
    claims = (
        "claims keep each cell to one task"
        if shared is None
        else "claims keep each cell to one task only if the nodes share them"
    )
    resources = [
        f"partition {options.partition}" if options.partition
        else "SLURM's default partition (no --slurm-partition given)",
        f"{options.gpus_per_task} GPU(s) per node" if options.gpus_per_task
        else "CPU-only tasks (--slurm-gpus-per-task 0)",
    ]
    return (
        f"would submit 1 job array of {tasks} tasks for the {left} cells left of matrix "
        f"{matrix_name} (each task a worker: {claims}{ddp}); {'; '.join(resources)}\n\n{script}"
    )


def unshared_stores(store: str, claims: str) -> str | None:
    """Why the nodes of a job array may not share the store or the claims, if they may not."""
    local = []
    if store.startswith("sqlite:") or not store.startswith(("http://", "https://", "postgres",
                                                            "mysql", "databricks")):
        local.append(f"the store is {store}")
    if claims.startswith("file locks"):
        local.append(f"claims are {claims}")
    if not local:
        return None
    return (
        f"{' and '.join(local)}: every node must mount that folder (and sqlite is unsafe over "
        "NFS); for a cluster set MLFLOW_TRACKING_URI to an `mlflow server` and --claims to a "
        "postgresql:// URI"
    )


def check_options(options: SlurmOptions) -> None:
    if options.timeout_min < 1:
        raise SpecError(f"--timeout-min {options.timeout_min}: expected 1 or more minutes")
    if options.array_parallelism < 1:
        raise SpecError(f"--array-parallelism {options.array_parallelism}: expected 1 or more")
    if options.gpus_per_task < 0:
        raise SpecError(f"--slurm-gpus-per-task {options.gpus_per_task}: expected 0 or more")
    if options.nodes < 1:
        raise SpecError(f"--slurm-nodes {options.nodes}: expected 1 or more")


@register_executor("slurm")
class SlurmArray(Executor):
    help = "one submitit job array whose tasks are workers"
    order = 50  # only when named: `--executor slurm`

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--slurm-partition", help="with --executor slurm")
        group.add_argument(
            "--slurm-gpus-per-task", type=int, default=1,
            help="GPUs of each array task; more than 1: one DDP run across them (a process per "
            "GPU)",
        )
        group.add_argument("--slurm-nodes", type=int, default=1,
                           help="nodes of each array task (one DDP run across)")
        group.add_argument("--slurm-cpus-per-task", type=int, help="CPUs of each task")
        group.add_argument("--array-parallelism", type=int, default=64,
                           help="tasks running at once")
        group.add_argument("--array-size", type=int,
                           help="tasks (default: one per cell to do, capped)")
        group.add_argument("--timeout-min", type=int, default=24 * 60,
                           help="time limit of a task")

    def check(self, args: argparse.Namespace) -> None:
        for flag, given in (("--workers", args.workers), ("--gpus", args.gpus),
                            ("--isolate", args.isolate)):
            if given is not None and given is not False:
                raise SpecError(
                    f"{flag} {'' if given is True else given} with --executor slurm: each array "
                    "task is one worker on the GPUs SLURM gives it; set --array-parallelism "
                    "(tasks at once) and --slurm-gpus-per-task instead".replace("  ", " ")
                )
        check_options(_options(args))

    def how(self, args: argparse.Namespace) -> str:
        return "a SLURM job array, one worker per task"

    def dry_run(self, launch: Launch) -> int:
        options, shared = self._prepare(launch)
        keyed, unkeyed_reason = bind_present_data(launch.matrix.on_ranks(options.world_size),
                                                  launch.workdir)
        if unkeyed_reason:
            left = sum(chosen(run, launch.cells) for run in keyed.runs)
        else:
            left = sum(runnable(c.state, launch.retry_failed)
                       for c in plan(keyed, launch.tracker(), launch.workdir, launch.cells))
        print(dry_run_text(launch.matrix.name, left, options, launch.workdir, shared))
        return 0

    def run(self, launch: Launch) -> int:
        options, _ = self._prepare(launch)
        matrix, workdir = launch.matrix, launch.workdir
        jobs, left = submit(matrix, tracker=launch.tracker(), workdir=workdir, options=options,
                            claims_uri=launch.args.claims, retry_failed=launch.retry_failed,
                            cells=launch.cells)
        if not jobs:
            print(f"matrix {matrix.name}: nothing to submit, every cell is done")
            return 0
        print(
            f"submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks) for the "
            f"{left} cells left of matrix {matrix.name}; logs in {workdir / 'slurm'}; follow it "
            f"with `python -m bench status --matrix {launch.args.matrix}`"
        )
        return 0

    def _prepare(self, launch: Launch) -> tuple[SlurmOptions, str | None]:
        options = _options(launch.args)
        if options.world_size > 1:
            distributed.check_ddp_matrix(launch.matrix, None)
        shared = unshared_stores(describe_store(launch.args.tracking, launch.workdir),
                                 describe_claims(launch.workdir, launch.args.claims))
        if shared:
            print(f"warning: {shared}", file=sys.stderr)
        return options, shared


def _options(args: argparse.Namespace) -> SlurmOptions:
    return SlurmOptions(
        partition=args.slurm_partition, gpus_per_task=args.slurm_gpus_per_task,
        cpus_per_task=args.slurm_cpus_per_task, timeout_min=args.timeout_min,
        array_parallelism=args.array_parallelism, tasks=args.array_size, nodes=args.slurm_nodes,
    )
