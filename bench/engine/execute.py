"""One run's lifecycle: build, resume or start, train, checkpoint, log, finish.

The order per epoch is: checkpoint committed, then that epoch's metrics logged; a resumed run logs
from the checkpoint whatever the tracker missed, so no step is ever logged twice or lost.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import methods
import model_zoo
from bench.data import Loaders, make_loaders
from bench.data.datasets.registry import load_arrays
from bench.data.sharding import WHOLE, Shard
from bench.engine import checkpoint, faults, teacher_cache
from bench.engine.distributed import Group, RankDied, single
from bench.engine.environment import apply_precision, environment_tags, pip_freeze
from bench.engine.train import TeacherForward, build_optimizer, train_epochs
from bench.errors import BenchError, RunFailed
from bench.files import atomic_write_text, quarantine, storage_problem
from bench.spec import DataSpec, RunSpec
from bench.store.schema import run_tags
from bench.store.trackers import FAILED, FINISHED, KILLED, RUNNING, StoreUnavailable


@dataclass
class Outcome:
    status: str  # FINISHED, FAILED or KILLED (interrupted, resumable)
    run_id: str | None
    metrics: dict[str, float]
    reason: str = ""
    resumed_from: int | None = None
    epochs_trained: int = 0
    weights: Path | None = None


@dataclass(frozen=True)
class LoadedTeacher:
    arch: str
    model: nn.Module
    sha256: str
    top1: float
    path: str | None = None  # the file it was loaded from (None: the arch's pretrained weights)


@dataclass(frozen=True)
class TrainOrder:
    """Rank 0's order to the other ranks of a DDP group: train `run` with this teacher (its
    file and sha256), from the checkpoint of `resume_epoch` (None: from scratch)."""

    run: RunSpec
    teacher: tuple[str, str | None, str] | None  # (arch, file or None, sha256)
    resume_epoch: int | None


class GroupAborted(BenchError):
    """Rank 0 failed where the other ranks did not: the group stops (they exit with it)."""


class RefusedResume(BenchError):
    """A checkpoint that belongs to another run or another teacher."""


def checkpoint_path(workdir: Path, run: RunSpec) -> Path:
    return Path(workdir) / "checkpoints" / f"{run.run_key}.pt"


def loaders_for(run: RunSpec, device: torch.device, workdir: Path, shard: Shard = WHOLE) -> Loaders:
    """Loaders shared by the runs of one process that read the same data the same way; under
    DDP, this rank's part of every batch (`shard`)."""
    views = 2 if methods.needs(run.method.name).two_views else 1
    return _loaders(run.data, run.recipe.batch_size, run.seed, str(device), str(workdir), views,
                    shard)  # fmt: skip


@functools.lru_cache(maxsize=8)
def _loaders(
    data: DataSpec, batch_size: int, seed: int, device: str, workdir: str, views: int = 1,
    shard: Shard = WHOLE,
) -> Loaders:  # fmt: skip
    return make_loaders(data, batch_size=batch_size, seed=seed, device=torch.device(device),
                        workdir=Path(workdir), views=views, shard=shard)  # fmt: skip


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


def _final_metrics(history: dict[str, float], best: dict[str, float]) -> dict[str, float]:
    """Last epoch; best on test (mdistiller's number); with a validation split, the test top-1
    of the epoch with the best validation top-1 (an honest best)."""
    final = {
        "last_top1": history["test/top1"],
        "last_top5": history["test/top5"],
        "best_top1": best["top1"],
        "best_top5": best["top5"],
        "best_epoch": best["epoch"],
    }
    if "val_epoch" in best:
        final |= {
            "best_val_top1": best["val_test_top1"],
            "best_val_top5": best["val_test_top5"],
            "best_val_epoch": best["val_epoch"],
            "val_top1": best["val_top1"],
        }
    return final


def _better(best: dict, epoch: int, metrics: dict[str, float]) -> dict:
    """The best epochs so far: on test, and (ties to the earlier epoch) on validation."""
    if metrics["test/top1"] > best["top1"]:
        best = best | {"top1": metrics["test/top1"], "top5": metrics["test/top5"], "epoch": epoch}
    if "val/top1" in metrics and metrics["val/top1"] > best.get("val_top1", -1.0):
        best = best | {"val_top1": metrics["val/top1"], "val_test_top1": metrics["test/top1"],
                       "val_test_top5": metrics["test/top5"], "val_epoch": epoch}  # fmt: skip
    return best


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


def _start_or_adopt(run: RunSpec, tracker, workdir: Path, device, teacher, role: str) -> str:
    """A new tracker run, or the orphan a killed worker left before its first checkpoint.

    Metrics are logged only after a checkpoint commits, so an orphan without a checkpoint holds
    no epoch metrics and can be adopted without logging any step twice.
    """
    orphans = [r for r in tracker.search(run_key=run.run_key) if r.status in (RUNNING, KILLED)]
    for orphan in orphans:
        if "epoch" in orphan.tags:
            # it committed epochs whose checkpoint is not here (another machine's work
            # directory): adopting it would log those steps twice, so it is closed and the cell
            # starts over in a new run
            reason = "abandoned: its checkpoint is not in this work directory; restarted"
            tracker.set_tags(orphan.run_id, {"failure_reason": reason, "resumable": "false"})
            tracker.finish(orphan.run_id, FAILED)
            continue
        tracker.reopen(orphan.run_id)
        tracker.set_tags(orphan.run_id, {"adopted": "true"})
        return orphan.run_id
    run_id = tracker.start(run.name, run.flat_params(), run_tags(run, role, teacher))
    spec_file = workdir / "specs" / f"{run.run_key}.json"
    atomic_write_text(
        spec_file,
        json.dumps(
            {
                "run_key": run.run_key,
                "cell_key": run.cell_key,
                "cell": run.cell(),
                "execution": dataclasses.asdict(run.execution),
                "backend": run.data.backend,
                "data_spec": dataclasses.asdict(run.data),
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    tracker.log_artifact(run_id, spec_file)
    freeze = workdir / "specs" / "environment.txt"
    atomic_write_text(freeze, pip_freeze())
    tracker.log_artifact(run_id, freeze)
    tags = environment_tags(device)
    tags["python"] = platform.python_version()
    if teacher is not None:
        tags["teacher_top1"] = f"{teacher.top1:.4f}"
        tracker.log_metrics(run_id, {"teacher_top1": teacher.top1}, step=0)
    tracker.set_tags(run_id, tags)
    return run_id


class StorageError(BenchError):
    """A full, read-only or forbidden disk: the run is left resumable."""


def _leave_resumable(tracker, run_id: str) -> None:
    try:
        tracker.set_tags(run_id, {"resumable": "true"})
        tracker.finish(run_id, KILLED)
    except Exception:  # the store may sit on the same full disk: the checkpoint still resumes
        pass


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


def _load_resume_state(ckpt_file: Path, run: RunSpec, tracker) -> dict | None:
    """The checkpoint to resume from, or None to start from scratch. A checkpoint that fails to
    load is moved aside, and the runs it would have continued are closed as FAILED with why."""
    if not ckpt_file.is_file():
        return None
    try:
        return checkpoint.load(ckpt_file)
    except checkpoint.CheckpointUnreadable as exc:
        moved = quarantine(ckpt_file)
        reason = f"checkpoint unreadable ({exc}); moved to {moved.name}, restarted from scratch"
        warn(reason)
        for record in tracker.search(run_key=run.run_key):
            if record.status in (RUNNING, KILLED):
                tracker.set_tags(record.run_id, {"failure_reason": reason, "resumable": "false"})
                tracker.finish(record.run_id, FAILED)
        return None


def _check_checkpoint(state: dict, ckpt_file: Path, run: RunSpec, teacher_sha) -> None:
    if state["run_key"] != run.run_key:
        raise RefusedResume(
            f"checkpoint {ckpt_file} belongs to run_key {state['run_key']}, "
            f"not {run.run_key}; move it away to start over"
        )
    if state.get("teacher_sha256") != teacher_sha:
        raise RefusedResume(
            f"checkpoint {ckpt_file} was trained against teacher sha256 "
            f"{state.get('teacher_sha256')}, not {teacher_sha}; refusing to resume"
        )


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
               stop_requested=lambda: False) -> None:  # fmt: skip
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
        )  # fmt: skip
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
    student, method, loss_fn, optimizer = (built.student, built.method, built.loss_fn,
                                           built.optimizer)  # fmt: skip
    loaders, teacher_logits, channels_last = (built.loaders, built.teacher_logits,
                                              built.channels_last)  # fmt: skip
    teacher_sha = teacher.sha256 if teacher is not None else None

    ckpt_file = checkpoint_path(workdir, run)
    best = {"top1": -1.0, "top5": -1.0, "epoch": 0}
    last_metrics: dict[str, float] = {}
    resumed_from = None
    start_epoch = 1
    resume_count = 0
    state = _load_resume_state(ckpt_file, run, tracker)
    if state is not None:
        _check_checkpoint(state, ckpt_file, run, teacher_sha)
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        best, last_metrics = state["best"], state["metrics"]
        resumed_from = start_epoch = state["epoch"] + 1
        resume_count = state.get("resume_count", 0) + 1
        if tracker.has_run(state["run_id"]):
            run_id = state["run_id"]
            tracker.reopen(run_id)
            logged = {step for step, _ in tracker.history(run_id, "test/top1")}
        else:  # the store lost the run (a new or restored store): resume in a new one
            warn(
                f"checkpoint {ckpt_file} belongs to run {state['run_id']}, which "
                f"{tracker.describe()} does not hold; resuming it in a new run"
            )
            run_id = _start_or_adopt(run, tracker, workdir, device, teacher, role)
            tracker.set_tags(run_id, {"adopted_checkpoint_of": state["run_id"]})
            logged = set()
        if state["epoch"] not in logged:  # died between checkpoint commit and logging
            tracker.log_metrics(run_id, state["metrics"], step=state["epoch"])
        tracker.set_tags(run_id, {"resume_count": str(resume_count),
                                  "resumed_from_epoch": str(start_epoch),
                                  "host": socket.gethostname()})  # fmt: skip
    else:
        run_id = _start_or_adopt(run, tracker, workdir, device, teacher, role)
    group.post(TrainOrder(run, _teacher_order(teacher),
                          None if state is None else state["epoch"]))  # fmt: skip

    def commit_epoch(epoch: int, metrics: dict[str, float]) -> None:
        nonlocal best, last_metrics
        best = _better(best, epoch, metrics)
        last_metrics = metrics
        checkpoint.atomic_save(
            {
                "run_key": run.run_key,
                "run_id": run_id,
                "teacher_sha256": teacher_sha,
                "epoch": epoch,
                "model": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "method": method.state_dict(),
                "best": best,
                "metrics": metrics,
                "resume_count": resume_count,
            },
            ckpt_file,
            fault_epoch=epoch,
        )
        tracker.log_metrics(run_id, metrics, step=epoch)
        tracker.set_tags(run_id, {"heartbeat": f"{time.time():.0f}", "epoch": str(epoch)})
        if on_epoch_done is not None:
            on_epoch_done(epoch, metrics)

    try:
        last_epoch = train_epochs(
            _parallel(student, run, device, group),
            loss_fn,
            teacher_logits,
            loaders,
            run.recipe,
            optimizer,
            device=device,
            precision=run.execution.precision,
            start_epoch=start_epoch,
            on_epoch=commit_epoch,
            on_progress=on_progress,
            stop_requested=stop_requested,
            channels_last=channels_last,
            group=group,
        )
    except StoreUnavailable:
        raise  # nothing to record in a store that does not answer: the checkpoint waits
    except Exception as exc:
        problem = storage_problem(exc)
        if problem is not None:
            _leave_resumable(tracker, run_id)  # the last committed checkpoint stays
            raise StorageError(problem) from None
        if isinstance(exc, RankDied):
            tracker.set_tags(run_id, {"failure_reason": str(exc)})
            _leave_resumable(tracker, run_id)
            raise
        epoch = exc.epoch if isinstance(exc, RunFailed) else None
        reason = exc.reason if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        tags = {"failure_reason": reason}
        if epoch is not None:
            tags["failure_epoch"] = str(epoch)
        tracker.set_tags(run_id, tags)
        tracker.finish(run_id, FAILED)
        checkpoint.remove(ckpt_file)
        where = f"epoch {epoch}: " if epoch is not None else ""
        if group.distributed and not isinstance(exc, RunFailed):
            # the other ranks may still be inside this run's collectives: the group ends here
            raise GroupAborted(f"{run.name}: {where}{reason}") from exc
        return Outcome(FAILED, run_id, {}, where + reason, resumed_from)
    trained = last_epoch - start_epoch + 1
    if last_epoch < run.recipe.epochs:
        tracker.set_tags(run_id, {"resumable": "true"})
        tracker.finish(run_id, KILLED)
        return Outcome(KILLED, run_id, last_metrics, "interrupted", resumed_from, trained)

    final = _final_metrics(last_metrics, best)
    weights = workdir / "weights" / f"{run.run_key}.pt"
    method_state = method.state_dict()
    checkpoint.atomic_save(
        {"model": student.state_dict()} | ({"method": method_state} if method_state else {}),
        weights,
    )
    tracker.log_artifact(run_id, weights, "weights")
    tracker.log_metrics(run_id, final, step=run.recipe.epochs)
    tracker.set_tags(run_id, {"resumable": "false"})
    tracker.finish(run_id, FINISHED)
    checkpoint.remove(ckpt_file)
    return Outcome(FINISHED, run_id, final, "", resumed_from, trained, weights)
