"""A run's lifecycle in the store and on disk, as one object: start it (or resume it from its
checkpoint, or adopt the orphan a dead worker left), commit each epoch, and end it finished,
interrupted (resumable) or failed.

The order per epoch is: checkpoint committed, then that epoch's metrics logged; a resumed run
logs from the checkpoint whatever the tracker missed, so no step is ever logged twice or lost.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn
from tqdm import tqdm

from bench.engine import checkpoint
from bench.engine.distributed import RankDied
from bench.engine.environment import environment_tags, pip_freeze
from bench.errors import BenchError, RunFailed
from bench.files import atomic_write_text, quarantine, storage_problem
from bench.spec import RunSpec
from bench.store.schema import run_tags
from bench.store.trackers import FAILED, FINISHED, KILLED, RUNNING

if TYPE_CHECKING:
    import torch

    from bench.engine.teachers import LoadedTeacher


@dataclass
class Outcome:
    status: str  # FINISHED, FAILED or KILLED (interrupted, resumable)
    run_id: str | None
    metrics: dict[str, float]
    reason: str = ""
    resumed_from: int | None = None
    epochs_trained: int = 0
    weights: Path | None = None


class RefusedResume(BenchError):
    """A checkpoint that belongs to another run or another teacher."""


def checkpoint_path(workdir: Path, run: RunSpec) -> Path:
    return Path(workdir) / "checkpoints" / f"{run.run_key}.pt"



@dataclass
class RunLifecycle:
    """One run's record in the store and its checkpoint, from `begin` to `finished`,
    `interrupted` or `failed`. The model, optimizer and method are the ones being trained: a
    resume loads their state, each commit saves it."""

    run: RunSpec
    tracker: object
    workdir: Path
    run_id: str
    student: nn.Module
    optimizer: torch.optim.Optimizer
    method: nn.Module
    teacher_sha: str | None
    best: dict = field(default_factory=lambda: {"top1": -1.0, "top5": -1.0, "epoch": 0})
    last_metrics: dict = field(default_factory=dict)
    resumed_from: int | None = None  # the first epoch trained now, when resumed
    resume_count: int = 0

    @property
    def checkpoint_file(self) -> Path:
        return checkpoint_path(self.workdir, self.run)

    @property
    def start_epoch(self) -> int:
        return self.resumed_from or 1

    @property
    def resume_epoch(self) -> int | None:
        """The checkpoint's epoch the run resumes after (None: from scratch)."""
        return None if self.resumed_from is None else self.resumed_from - 1

    @classmethod
    def begin(cls, run: RunSpec, *, tracker, workdir: Path, device, teacher: LoadedTeacher | None,
              role: str, student: nn.Module, optimizer, method: nn.Module) -> RunLifecycle:
        """Resume from the run's checkpoint (its state loaded into the student, optimizer and
        method), or start a new run (or adopt an orphan without epochs)."""
        teacher_sha = teacher.sha256 if teacher is not None else None
        ckpt_file = checkpoint_path(workdir, run)
        state = _load_resume_state(ckpt_file, run, tracker)
        if state is None:
            run_id = _start_or_adopt(run, tracker, workdir, device, teacher, role)
            return cls(run, tracker, workdir, run_id, student, optimizer, method, teacher_sha)
        _check_checkpoint(state, ckpt_file, run, teacher_sha)
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        resume_count = state.get("resume_count", 0) + 1
        run_id = _reopen(state, run, tracker, workdir, device, teacher, role)
        life = cls(run, tracker, workdir, run_id, student, optimizer, method, teacher_sha,
                   state["best"], state["metrics"], state["epoch"] + 1, resume_count)
        tracker.set_tags(run_id, {"resume_count": str(resume_count),
                                  "resumed_from_epoch": str(life.start_epoch),
                                  "host": socket.gethostname()})
        return life

    def commit(self, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch's checkpoint written atomically, then its metrics logged."""
        self.best = _better(self.best, epoch, metrics)
        self.last_metrics = metrics
        checkpoint.atomic_save(
            {
                "run_key": self.run.run_key,
                "run_id": self.run_id,
                "teacher_sha256": self.teacher_sha,
                "epoch": epoch,
                "model": self.student.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "method": self.method.state_dict(),
                "best": self.best,
                "metrics": metrics,
                "resume_count": self.resume_count,
            },
            self.checkpoint_file,
            fault_epoch=epoch,
        )
        self.tracker.log_metrics(self.run_id, metrics, step=epoch)
        self.tracker.set_tags(self.run_id, {"heartbeat": f"{time.time():.0f}",
                                            "epoch": str(epoch)})

    def ended(self, last_epoch: int) -> Outcome:
        """The run finished, or was interrupted before its last epoch (resumable)."""
        trained = last_epoch - self.start_epoch + 1
        if last_epoch < self.run.recipe.epochs:
            self.tracker.set_tags(self.run_id, {"resumable": "true"})
            self.tracker.finish(self.run_id, KILLED)
            return Outcome(KILLED, self.run_id, self.last_metrics, "interrupted",
                           self.resumed_from, trained)
        final = _final_metrics(self.last_metrics, self.best)
        weights = self.workdir / "weights" / f"{self.run.run_key}.pt"
        method_state = self.method.state_dict()
        checkpoint.atomic_save(
            {"model": self.student.state_dict()} | ({"method": method_state} if method_state
                                                   else {}),
            weights,
        )
        self.tracker.log_artifact(self.run_id, weights, "weights")
        self.tracker.log_metrics(self.run_id, final, step=self.run.recipe.epochs)
        self.tracker.set_tags(self.run_id, {"resumable": "false"})
        self.tracker.finish(self.run_id, FINISHED)
        checkpoint.remove(self.checkpoint_file)
        return Outcome(FINISHED, self.run_id, final, "", self.resumed_from, trained, weights)

    def failed(self, exc: Exception, distributed: bool) -> Outcome:
        """What an error during training leaves: a full or forbidden disk or a dead rank, the
        run resumable at its last checkpoint (raised on); any other error, the run FAILED with
        its reason and its checkpoint removed."""
        problem = storage_problem(exc)
        if problem is not None:
            _leave_resumable(self.tracker, self.run_id)  # the last committed checkpoint stays
            raise StorageError(problem) from None
        if isinstance(exc, RankDied):
            self.tracker.set_tags(self.run_id, {"failure_reason": str(exc)})
            _leave_resumable(self.tracker, self.run_id)
            raise exc
        epoch = exc.epoch if isinstance(exc, RunFailed) else None
        reason = exc.reason if isinstance(exc, RunFailed) else f"{type(exc).__name__}: {exc}"
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        tags = {"failure_reason": reason}
        if epoch is not None:
            tags["failure_epoch"] = str(epoch)
        self.tracker.set_tags(self.run_id, tags)
        self.tracker.finish(self.run_id, FAILED)
        checkpoint.remove(self.checkpoint_file)
        where = f"epoch {epoch}: " if epoch is not None else ""
        if distributed and not isinstance(exc, RunFailed):
            # the other ranks may still be inside this run's collectives: the group ends here
            raise GroupAborted(f"{self.run.name}: {where}{reason}") from exc
        return Outcome(FAILED, self.run_id, {}, where + reason, self.resumed_from)


def _reopen(state: dict, run: RunSpec, tracker, workdir: Path, device, teacher, role) -> str:
    """The run a checkpoint continues, reopened with the epoch it committed logged; a new run
    where the store lost it (a new or restored store)."""
    ckpt_file = checkpoint_path(workdir, run)
    if tracker.has_run(state["run_id"]):
        run_id = state["run_id"]
        tracker.reopen(run_id)
        logged = {step for step, _ in tracker.history(run_id, "test/top1")}
    else:
        warn(
            f"checkpoint {ckpt_file} belongs to run {state['run_id']}, which "
            f"{tracker.describe()} does not hold; resuming it in a new run"
        )
        run_id = _start_or_adopt(run, tracker, workdir, device, teacher, role)
        tracker.set_tags(run_id, {"adopted_checkpoint_of": state["run_id"]})
        logged = set()
    if state["epoch"] not in logged:  # died between checkpoint commit and logging
        tracker.log_metrics(run_id, state["metrics"], step=state["epoch"])
    return run_id


class GroupAborted(BenchError):
    """Rank 0 failed where the other ranks did not: the group stops (they exit with it)."""


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
                       "val_test_top5": metrics["test/top5"], "val_epoch": epoch}
    return best


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


