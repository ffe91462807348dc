"""One run on this process: its loaders, student, method and optimizer built, then trained
epoch by epoch through its lifecycle (bench/engine/lifecycle.py); under DDP, rank 0's side
(`execute_run`) and the other ranks' (`follow_run`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

import methods
import model_zoo
from bench.data.datasets.registry import load_arrays
from bench.data.loaders import Loaders, make_loaders
from bench.data.sharding import WHOLE, Shard
from bench.engine import checkpoint, faults, teacher_cache
from bench.engine.distributed import Group, single
from bench.engine.environment import apply_precision
from bench.engine.lifecycle import (
    GroupAborted,
    Outcome,
    RunLifecycle,
    checkpoint_path,
)
from bench.engine.train import TeacherForward, build_optimizer, train_epochs
from bench.errors import RunFailed
from bench.spec import DataSpec, RunSpec
from bench.store.trackers import StoreUnavailable

if TYPE_CHECKING:
    from bench.engine.teachers import LoadedTeacher

@dataclass(frozen=True)
class TrainOrder:
    """Rank 0's order to the other ranks of a DDP group: train `run` with this teacher (its
    file and sha256), from the checkpoint of `resume_epoch` (None: from scratch)."""

    run: RunSpec
    teacher: tuple[str, str | None, str] | None  # (arch, file or None, sha256)
    resume_epoch: int | None


def loaders_for(run: RunSpec, device: torch.device, workdir: Path, shard: Shard = WHOLE) -> Loaders:
    """Loaders shared by the runs of one process that read the same data the same way; under
    DDP, this rank's part of every batch (`shard`)."""
    views = 2 if methods.needs(run.method.name).two_views else 1
    return _loaders(run.data, run.recipe.batch_size, run.seed, str(device), str(workdir), views,
                    shard)


@functools.lru_cache(maxsize=8)
def _loaders(
    data: DataSpec, batch_size: int, seed: int, device: str, workdir: str, views: int = 1,
    shard: Shard = WHOLE,
) -> Loaders:
    return make_loaders(data, batch_size=batch_size, seed=seed, device=torch.device(device),
                        workdir=Path(workdir), views=views, shard=shard)


class _NanInjection(nn.Module):
    """Fault injection: the wrapped method's loss becomes NaN from a given epoch."""

    def __init__(self, method: nn.Module, from_epoch: int):
        super().__init__()
        self.method, self.from_epoch = method, from_epoch

    def forward(self, student_logits, teacher_logits, target, epoch):
        terms = self.method(student_logits, teacher_logits, target, epoch)
        if epoch >= self.from_epoch:
            terms = {name: value * float("nan") for name, value in terms.items()}
        return terms

    def step(self, terms, optimizer) -> None:
        self.method.step(terms, optimizer)


def _teacher_logits(run: RunSpec, teacher: LoadedTeacher | None, loaders, device, workdir: Path):
    """The teacher forward per batch, or lookups in the exact teacher-logit cache."""
    if teacher is None:
        return None
    if run.execution.teacher_cache == "none":
        return TeacherForward(teacher.model)
    cache = _logit_cache(teacher, run.data, run.data_hash, run.execution, str(device), workdir)
    return teacher_cache.CachedTeacher(cache, loaders.variants)


@functools.lru_cache(maxsize=1)  # one cache in memory at a time: CIFAR-100's is 1.6 GB
def _logit_cache(teacher: LoadedTeacher, data, data_hash: str, execution, device: str, workdir):
    splits = load_arrays(data, workdir)
    return teacher_cache.load_or_build(
        teacher.model,
        teacher_sha=teacher.sha256,
        data_hash=data_hash,
        images=splits.train_images,
        file_index=splits.train_index,
        dtype=execution.teacher_cache,
        device=torch.device(device),
        workdir=workdir,
        precision=execution.precision,
        stats=splits.normalization,
    )


def _build_method(run: RunSpec, loaders: Loaders, teacher, device) -> methods.Method:
    """The run's method, prepared with the frozen teacher and the data facts, on the device."""
    method = methods.create(run.method.name, num_classes=loaders.num_classes, **run.method.params)
    needs = method.needs
    model = teacher.model if teacher is not None else None
    method.prepare(
        methods.MethodContext(
            num_classes=loaders.num_classes,
            train_size=loaders.train_size,
            dataset=run.data.dataset,
            device=device,
            teacher=model,
            teacher_classifier=classifier_of(model) if needs.teacher_classifier else None,
        )
    )
    return method.to(device)


def classifier_of(model: nn.Module | None) -> nn.Linear:
    """The last linear layer of a model: its classifier."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)] if model else []
    if not linears:
        raise RunFailed("the method needs the teacher's classifier, and the teacher has no Linear")
    return linears[-1]


@dataclass
class _Built:
    loaders: Loaders
    student: nn.Module
    method: methods.Method
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    teacher_logits: object
    channels_last: bool


def _build(run: RunSpec, device, workdir: Path, teacher, group: Group) -> _Built:
    """The run's loaders, student, method and optimizer; the same on every rank (same seed)."""
    apply_precision(run.execution.precision)
    loaders = loaders_for(run, device, workdir, group.shard)
    torch.manual_seed(run.seed)
    student = model_zoo.create(run.student, num_classes=loaders.num_classes).to(device)
    channels_last = run.execution.memory_format == "channels_last"
    if channels_last:
        student = student.to(memory_format=torch.channels_last)
    method = _build_method(run, loaders, teacher, device)
    nan_epoch = faults.nan_from_epoch(run.name)
    loss_fn = _NanInjection(method, nan_epoch) if nan_epoch is not None else method
    optimizer = build_optimizer(student, run.recipe, device, method)
    teacher_logits = _teacher_logits(run, teacher, loaders, device, workdir)
    return _Built(loaders, student, method, loss_fn, optimizer, teacher_logits, channels_last)


def _parallel(student: nn.Module, run: RunSpec, device, group: Group) -> nn.Module:
    """The student as DistributedDataParallel (rank 0's weights broadcast at construction), with
    SyncBatchNorm where the recipe asks for it; the module itself in a single process."""
    if not group.distributed:
        return student
    if run.recipe.sync_bn:
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
    ids = [device.index] if device.type == "cuda" else None
    # Buffers are synced once at construction, not before every forward (DDP's default): a
    # training forward normalizes with batch statistics, never the running ones, and
    # `train_epochs` gives every rank rank 0's buffers before each evaluation, so the per-step
    # collective would change nothing.
    return nn.parallel.DistributedDataParallel(student, device_ids=ids, forward_sync_buffers=False)


def _teacher_order(teacher: LoadedTeacher | None):
    return None if teacher is None else (teacher.arch, teacher.path, teacher.sha256)


def follow_run(order: TrainOrder, *, group: Group, workdir: Path, device, teacher,
               stop_requested=lambda: False) -> None:
    """A rank > 0's side of `execute_run`: the same model from the same checkpoint, its part of
    each batch; rank 0 logs and checkpoints. A NaN ends the run on every rank in the same epoch
    (rank 0 records it); any other error leaves the group."""
    run = order.run
    built = _build(run, device, Path(workdir), teacher, group)
    if order.resume_epoch is not None:
        ckpt_file = checkpoint_path(Path(workdir), run)
        state = checkpoint.load(ckpt_file)
        if state["epoch"] != order.resume_epoch or state["run_key"] != run.run_key:
            raise GroupAborted(
                f"{ckpt_file}: rank {group.rank} reads epoch {state['epoch']} where rank 0 "
                f"resumes epoch {order.resume_epoch}; the ranks must share the work directory"
            )
        built.student.load_state_dict(state["model"])
        built.optimizer.load_state_dict(state["optimizer"])
        built.method.load_state_dict(state["method"])
    start = 1 if order.resume_epoch is None else order.resume_epoch + 1
    try:
        train_epochs(
            _parallel(built.student, run, device, group), built.loss_fn, built.teacher_logits,
            built.loaders, run.recipe, built.optimizer, device=device,
            precision=run.execution.precision, start_epoch=start,
            on_epoch=lambda epoch, metrics: None, stop_requested=stop_requested,
            channels_last=built.channels_last, group=group,
        )
    except RunFailed:
        pass  # agreed by every rank (the NaN flag is summed); rank 0 records it


def execute_run(
    run: RunSpec,
    *,
    tracker,
    workdir: Path,
    device: torch.device,
    teacher: LoadedTeacher | None,
    role: str = "student",
    on_epoch_done=None,
    on_progress=None,
    stop_requested=lambda: False,
    group: Group | None = None,
) -> Outcome:
    """Train `run` to the end (or to an interruption), resuming from its checkpoint if any.

    Under DDP this is rank 0's side: it alone talks to the tracker and writes checkpoints, and
    it orders the other ranks (`follow_run`) to train with it once the start point is known."""
    group = group or single()
    workdir = Path(workdir)
    built = _build(run, device, workdir, teacher, group)
    life = RunLifecycle.begin(run, tracker=tracker, workdir=workdir, device=device,
                              teacher=teacher, role=role, student=built.student,
                              optimizer=built.optimizer, method=built.method)
    group.post(TrainOrder(run, _teacher_order(teacher), life.resume_epoch))

    def commit_epoch(epoch: int, metrics: dict[str, float]) -> None:
        life.commit(epoch, metrics)
        if on_epoch_done is not None:
            on_epoch_done(epoch, metrics)

    try:
        last_epoch = train_epochs(
            _parallel(built.student, run, device, group), built.loss_fn, built.teacher_logits,
            built.loaders, run.recipe, built.optimizer, device=device,
            precision=run.execution.precision, start_epoch=life.start_epoch,
            on_epoch=commit_epoch, on_progress=on_progress, stop_requested=stop_requested,
            channels_last=built.channels_last, group=group,
        )
    except StoreUnavailable:
        raise  # nothing to record in a store that does not answer: the checkpoint waits
    except Exception as exc:
        return life.failed(exc, group.distributed)
    return life.ended(last_epoch)
