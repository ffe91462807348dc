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

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from submitit.helpers import Checkpointable

from bench.engine import distributed, ranks
from bench.engine.binding import bind_data
from bench.engine.published_teachers import fetch_published_teachers
from bench.engine.runner import DONE, StopFlag, plan, run_worker
from bench.errors import SpecError
from bench.spec import Matrix
from bench.store.claims import check_claims, open_claims
from bench.store.trackers import reconnect

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
                                      "nodes": self.nodes}  # fmt: skip
        if cluster == "slurm":
            parameters.update(slurm_array_parallelism=self.array_parallelism,
                              slurm_signal_delay_s=SIGNAL_DELAY_S)  # fmt: skip
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
                 options: dict) -> None:  # fmt: skip
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
                                      work=lambda: self._work(task, device, group))  # fmt: skip
        return {} if result is None else result

    def _work(self, task: int, device: torch.device, group) -> dict[str, int]:
        stop = StopFlag()
        stop.install()  # SIGTERM (a cancelled or killed job): stop at a step boundary, resumable
        summary = run_worker(
            self.matrix,
            tracker=reconnect(self.address),
            workdir=Path(self.workdir),
            device=device,
            claims=open_claims(Path(self.workdir), self.claims_uri),
            stop=stop,
            log=lambda line: print(f"[task {task}] {line}", flush=True),
            group=group,
            **self.options,
        )
        kinds = ("trained", "skipped", "failed", "blocked", "interrupted")
        return {name: len(getattr(summary, name)) for name in kinds}


def prepare(matrix: Matrix, tracker, workdir: Path, cells=None) -> tuple[Matrix, int]:
    """Bind the data and fetch released teachers once, before any task starts; the cells left."""
    matrix = bind_data(matrix, workdir)
    left = [c for c in plan(matrix, tracker, workdir, cells) if c.state != DONE]
    fetch_published_teachers(matrix, workdir, [c.run for c in left])
    return matrix, len(left)


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
    check_claims(workdir, claims_uri)  # a bad claims URI is one line before anything is queued
    matrix, left = prepare(matrix.on_ranks(options.world_size), tracker, workdir, cells)
    if left == 0:
        return [], 0
    # a task is requeued at most 3 times on time-out (submitit's default), without limit on
    # preemption
    executor = submitit.AutoExecutor(folder=workdir / "slurm" / "%j", cluster=cluster)
    executor.update_parameters(name=f"kdbench-{matrix.name}",
                               **options.executor_parameters(cluster))  # fmt: skip
    worker = MatrixWorker(matrix, str(workdir), tracker.address(), claims_uri,
                          {"retry_failed": retry_failed, "cells": cells})  # fmt: skip
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
                          str(workdir / "slurm" / "%j")])  # fmt: skip
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
    ]  # fmt: skip
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
