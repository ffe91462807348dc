"""One run on several processes: torch.distributed (DDP) under torchrun, submitit or SLURM.

The launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT: torchrun,
or submitit's `TorchDistributedEnvironment`) makes a group; without it the group is the single
process, and every collective below is the identity. Rank 0 plans the matrix, talks to the store
and writes checkpoints; the other ranks take their orders from rank 0 over the rendezvous store
(`post` / `receive`), so a rank waiting for work is never blocked in a collective with a timeout.

Each rank beats a counter in the store every HEARTBEAT_S. When a collective fails (a peer closed
its socket: gloo notices at once) or a peer stops beating, the rank that stopped is named in a
`RankDied` error instead of hanging until the collective's timeout.
"""

from __future__ import annotations

import datetime
import os
import pickle
import threading
import time

import torch
import torch.distributed as dist

import methods
from bench.data.sharding import Shard
from bench.errors import BenchError, SpecError
from bench.spec import Matrix

HEARTBEAT_S = 1.0
DEAD_AFTER_S = 5.0  # a peer whose counter has not moved for this long is gone
ORDER_POLL_S = 0.05
TIMEOUT_S = 600  # collectives; long enough for rank 0's checkpoint and tracker writes
ENV_KEYS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class RankDied(BenchError):
    """A peer rank stopped (killed, crashed, or its node lost): the run is left resumable."""


class DistributedError(BenchError):
    """A bad distributed setting (one line)."""


def _env_int(key: str) -> int:
    value = os.environ[key]
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{key}={value!r}: expected an integer (set by torchrun)") from None


def world_size() -> int:
    """The launcher's number of ranks (1 without one)."""
    return _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1


def launched() -> bool:
    """True in a process that a distributed launcher started with more than one rank."""
    return all(key in os.environ for key in ENV_KEYS) and _env_int("WORLD_SIZE") > 1


class Group:
    """The processes of one run; a single process is a group of one."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, store=None,
                 backend: str = "none") -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.backend = backend
        self._store = store
        self._sequence = 0
        self._stop_beating = threading.Event()
        self._last_moved: dict[int, float] = {}
        self._counts: dict[int, bytes] = {}
        self._lock = threading.Lock()
        if store is not None:
            threading.Thread(target=self._beat, daemon=True, name="kdbench-heartbeat").start()

    # ------------------------------------------------------------------ identity
    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world)

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world} ({self.backend})"

    # ------------------------------------------------------------------ collectives
    def _collective(self, what: str, call):
        try:
            return call()
        except RuntimeError as exc:  # gloo / NCCL errors, timeouts included
            raise self.died(what, exc) from None

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum over ranks (float64 or int64 in, the same dtype out)."""
        if not self.distributed:
            return values
        values = values.clone()
        self._collective("all_reduce", lambda: dist.all_reduce(values))
        return values

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (a stop request, a failure)."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([int(flag)], device=device)).item())

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank: what rank 0 checkpoints is what
        every rank evaluates."""
        if not self.distributed:
            return
        for buffer in module.buffers():
            self._collective("broadcast", lambda b=buffer: dist.broadcast(b, 0))

    def all_gather_object(self, value) -> list:
        if not self.distributed:
            return [value]
        out: list = [None] * self.world
        self._collective("all_gather", lambda: dist.all_gather_object(out, value))
        return out

    # ------------------------------------------------------------------ orders from rank 0
    def post(self, command) -> None:
        """Rank 0: the next order to the other ranks (picklable; our own ranks only)."""
        if not self.distributed:
            return
        self._sequence += 1
        self._store.set(f"kdbench/order/{self._sequence}", pickle.dumps(command))

    def receive(self):
        """Ranks > 0: rank 0's next order, waiting as long as rank 0 lives."""
        self._sequence += 1
        key = f"kdbench/order/{self._sequence}"
        while True:
            try:
                if self._store.check([key]):
                    return pickle.loads(self._store.get(key))
            except RuntimeError as exc:  # rank 0 hosted the store, and it is gone
                raise self.died("waiting for rank 0's next order", exc) from None
            if 0 in self.silent_ranks():
                raise self.died("waiting for rank 0's next order")
            time.sleep(ORDER_POLL_S)

    # ------------------------------------------------------------------ liveness
    def _beat(self) -> None:
        count = 0
        while not self._stop_beating.is_set():
            count += 1
            try:
                self._store.set(f"kdbench/beat/{self.rank}", str(count))
                now = time.monotonic()
                for rank in range(self.world):
                    if rank == self.rank:
                        continue
                    seen = self._store.get(f"kdbench/beat/{rank}") if self._store.check(
                        [f"kdbench/beat/{rank}"]) else b"0"
                    with self._lock:
                        if self._counts.get(rank) != seen:
                            self._counts[rank] = seen
                            self._last_moved[rank] = now
                        self._last_moved.setdefault(rank, now)
            except Exception:  # the store's host (rank 0 or the launcher) is gone
                with self._lock:
                    self._last_moved[0] = -float("inf")
            self._stop_beating.wait(HEARTBEAT_S)

    def silent_ranks(self) -> list[int]:
        """Ranks whose heartbeat has not moved for DEAD_AFTER_S."""
        now = time.monotonic()
        with self._lock:
            return sorted(r for r, t in self._last_moved.items() if now - t > DEAD_AFTER_S)

    def peer_lost(self, exc: BaseException, what: str) -> RankDied | None:
        """The RankDied that explains `exc` (an error inside DDP's own collectives, e.g. the
        gradient all-reduce) when a peer has gone silent; None when every peer still beats."""
        if not self.distributed or self._store is None:
            return None
        error = self.died(what, exc)
        return error if self.silent_ranks() else None

    def died(self, what: str, exc: BaseException | None = None) -> RankDied:
        """The error to raise when a collective failed: which rank stopped, if it can be told."""
        deadline = time.monotonic() + DEAD_AFTER_S + 2 * HEARTBEAT_S
        dead = self.silent_ranks()
        while not dead and time.monotonic() < deadline:
            time.sleep(HEARTBEAT_S / 4)
            dead = self.silent_ranks()
        who = ", ".join(f"rank {r}" for r in dead) if dead else "a peer rank"
        detail = f" ({str(exc).splitlines()[0][:120]})" if exc is not None and not dead else ""
        return RankDied(
            f"{who} of {self.world} stopped responding during {what}{detail}; this rank "
            f"({self.rank}) exits, and the run is left resumable: rerun the same command"
        )

    def close(self) -> None:
        """Leave the group. Rank 0 may host the rendezvous store, so it leaves last: after every
        live rank has said it is leaving."""
        if self.distributed:
            try:
                if self.is_main:
                    waiting = set(range(1, self.world))
                    while waiting - set(self.silent_ranks()):
                        waiting = {
                            r for r in waiting if not self._store.check([f"kdbench/left/{r}"])
                        }
                        time.sleep(ORDER_POLL_S)
                else:
                    self._store.set(f"kdbench/left/{self.rank}", "1")
            except RuntimeError:  # the store's host is gone: nothing to wait for
                pass
        self._stop_beating.set()
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def single() -> Group:
    return Group()


def from_environment(device_type: str, timeout_s: float = TIMEOUT_S) -> Group:
    """The group torchrun (or submitit, or SLURM through submitit) described in the environment;
    the single process when there is none. CUDA ranks take GPU LOCAL_RANK and NCCL; CPU ranks
    take gloo."""
    if not launched():
        return single()
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank}: expected 0 <= RANK < WORLD_SIZE={world}")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={local_rank}: this node has {torch.cuda.device_count()} GPUs; "
                "start one process per GPU (torchrun --nproc-per-node <= GPUs)"
            )
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=timeout_s)
    # under torchrun the launcher's agent hosts the store; otherwise rank 0 does
    hosts = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=hosts, timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    return Group(rank, world, local_rank, store, backend)


def device_for(group: Group, device: torch.device) -> torch.device:
    """This rank's device: its own GPU (LOCAL_RANK) on CUDA."""
    if device.type == "cuda" and group.distributed:
        return torch.device("cuda", group.local_rank)
    return device


def check_ddp_matrix(matrix: Matrix, device: torch.device | None) -> None:
    """What a DDP run cannot do, refused in one line before any rank starts."""
    for run in matrix.runs:
        if methods.needs(run.method.name).optimizer:
            raise SpecError(
                f"method {run.method.name}: its own optimizer takes two backward passes per step, "
                "which DDP's gradient all-reduce does not support; run it in one process"
            )
    if device is None:
        return
    if device.type != "cuda" and any(run.recipe.sync_bn for run in matrix.runs):
        raise SpecError(
            f"recipe.sync_bn: true: torch's SyncBatchNorm runs on CUDA only, not on {device.type}; "
            "set recipe.sync_bn=false (each rank's own BatchNorm statistics)"
        )
