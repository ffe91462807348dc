"""Teachers: trained once with CE (under a lock) or loaded from a file; re-scored once at load."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import model_zoo
from bench.engine.distributed import Group
from bench.engine.environment import apply_precision
from bench.engine.execute import execute_run, loaders_for
from bench.engine.published_teachers import check_pin, fetch_published_teacher
from bench.engine.train import evaluate
from bench.errors import BenchError
from bench.files import atomic_write, atomic_write_text, quarantine
from bench.locks import file_lock
from bench.references import (
    Ours,
    PublishedTable,
    load_published,
    load_setups,
    published_teacher_top1,
    teacher_differences,
    teacher_release,
)
from bench.spec import RunSpec, TeacherSpec, teacher_run
from bench.spec.keys import short_hash
from bench.store.trackers import FINISHED, KILLED


@dataclass(frozen=True)
class LoadedTeacher:
    arch: str
    model: nn.Module
    sha256: str
    top1: float
    path: str | None = None  # the file it was loaded from (None: the arch's pretrained weights)


class TeacherFailed(BenchError):
    """The teacher could not be trained or loaded; its students are blocked."""


class TeacherInterrupted(BenchError):
    """A stop was requested while the teacher trained; its checkpoint resumes it on rerun."""


def _fetch_from_store(record, tracker, target: Path) -> bool:
    """The weights a finished teacher run logged (another machine trained it), into `target`."""
    if record is None or record.status != FINISHED or "last_top1" not in record.metrics:
        return False
    fetched = tracker.fetch_artifact(record.run_id, f"weights/{target.name}", target.parent)
    if fetched is None:
        return False
    with atomic_write(target, "wb") as handle, open(fetched, "rb") as source:
        shutil.copyfileobj(source, handle)
    scratch = next((p for p in fetched.parents if p.name.startswith(".fetch-")), None)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        fetched.unlink(missing_ok=True)
    return True


def _teacher_file(workdir: Path, key: str) -> Path:
    return Path(workdir) / "teachers" / f"{key}.pt"


def _read_scores(scores_file: Path) -> dict:
    """The cached scores; an unreadable file is a cache miss (the scores are recomputed)."""
    try:
        scores = json.loads(scores_file.read_text())
    except (OSError, ValueError):
        return {}
    return scores if isinstance(scores, dict) else {}


def _rescore(model, run: RunSpec, sha: str, device, workdir: Path) -> float:
    """Test top-1 of a teacher, computed once per (sha256, dataset content, eval transform)."""
    scores_file = Path(workdir) / "teachers" / "scores.json"
    key = (
        f"{sha}:{run.data_hash}:{run.data.test_subset_per_class}:normalize"
        + ("" if run.data.pixel_pipeline == "exact" else f":{run.data.pixel_pipeline}")
        + ("" if run.data.mean is None else f":{run.data.mean}:{run.data.std}")
    )
    score = _read_scores(scores_file).get(key)
    if not isinstance(score, (int, float)):
        score = evaluate(model, loaders_for(run, device, workdir).test, device)["top1"]
        with file_lock(scores_file.with_name(".scores.lock")):
            scores = _read_scores(scores_file) | {key: score}
            atomic_write_text(scores_file, json.dumps(scores, indent=1, sort_keys=True))
    return float(score)


def load_frozen(
    arch: str, path: Path | None, num_classes: int, device, channels_last: bool
) -> tuple[torch.nn.Module, str]:
    """A frozen teacher from a file, or (path None) from its published pretrained weights."""
    model = model_zoo.create(arch, num_classes=num_classes)
    try:
        if path is None:
            sha = model_zoo.load_pretrained(arch, model)
        else:
            sha = model_zoo.load_checkpoint(model, path)
    except (model_zoo.CheckpointError, OSError) as exc:
        raise TeacherFailed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, sha


def _quarantine_if_unreadable(arch: str, path: Path, num_classes: int, log) -> None:
    """A trained teacher's file that no longer loads is moved aside, so it is trained again."""
    try:
        model_zoo.load_checkpoint(model_zoo.create(arch, num_classes=num_classes), path)
    except model_zoo.CheckpointError as exc:
        moved = quarantine(path)
        log(f"warning: {exc}; moved to {moved.name}; training the teacher again")


def _check_published_accuracy(teacher: TeacherSpec, run: RunSpec, top1: float, sha, log) -> None:
    """A released teacher must score what its paper says, within the release's tolerance."""
    if run.data.test_subset_per_class is not None:
        log(f"teacher {teacher.arch}: re-score on a test subset, not checked against its paper")
        return
    published = published_teacher_top1(run.data.dataset, teacher.arch)
    release = teacher_release(run.data.dataset)
    setups = load_setups()
    row = PublishedTable(load_published()).teacher_top1(run.data.dataset, teacher.arch)
    if row is not None and row.setup in setups:
        differs = teacher_differences(run, setups[row.setup], Ours(finished_runs=0))
        if differs:  # another pixel pipeline or normalization: the paper's number is not ours
            why = "; ".join(differs)
            log(f"teacher {teacher.arch}: re-score not checked against its paper ({why})")
            return
    if published is None or release is None:
        log(f"warning: teacher {teacher.arch}: no published accuracy to check its re-score against")
        return
    expected, source = published
    if abs(top1 - expected) > release.tolerance:
        raise TeacherFailed(
            f"teacher {teacher.arch}: re-scored top-1 {top1:.2f} is {abs(top1 - expected):.2f} "
            f"points from the published {expected:.2f} ({source}); more than the allowed "
            f"{release.tolerance:g}, so the file (sha256 {sha[:12]}) is refused"
        )


def _load_given(teacher: TeacherSpec, run: RunSpec, *, tracker, workdir: Path, device,
                num_classes: int, channels_last: bool, log) -> LoadedTeacher:
    """A teacher not trained here (a file, a released checkpoint, pretrained weights): loaded,
    its pin checked, re-scored, and recorded once in the store as a teacher run."""
    path = Path(teacher.checkpoint).expanduser() if teacher.checkpoint else None
    if teacher.published:
        path = fetch_published_teacher(teacher, run.data.dataset, workdir)
    model, sha = load_frozen(teacher.arch, path, num_classes, device, channels_last)
    release = teacher_release(run.data.dataset) if teacher.source == "published" else None
    if release is not None:
        check_pin(release, teacher.arch, sha, path or teacher.pretrained)
    top1 = _rescore(model, run, sha, device, workdir)
    if teacher.source == "published":
        _check_published_accuracy(teacher, run, top1, sha, log)
    source = teacher.checkpoint or teacher.pretrained or str(path)
    key = short_hash({"teacher_file": sha, "data": run.data_hash})
    if tracker.find(key) is None:
        run_id = tracker.start(
            f"teacher {teacher.arch} (file)",
            {"checkpoint": source, "sha256": sha, "teacher.source": teacher.source},
            {
                "run_key": key,
                "role": "teacher",
                "teacher": teacher.arch,
                "teacher_sha256": sha,
                "teacher_source": teacher.source,
                "matrix": run.matrix,
            },
        )
        tracker.log_metrics(run_id, {"teacher_top1": top1, "last_top1": top1}, step=0)
        tracker.finish(run_id, FINISHED)
    log(
        f"teacher {teacher.arch}: loaded {source} (sha256 {sha[:12]}), "
        f"re-scored top-1 {top1:.2f}"
    )
    return LoadedTeacher(teacher.arch, model, sha, top1, None if path is None else str(path))



def prepare_teacher(
    teacher: TeacherSpec,
    student_run: RunSpec,
    *,
    tracker,
    workdir: Path,
    device: torch.device,
    log=print,
    stop_requested=lambda: False,
    group: Group | None = None,
) -> LoadedTeacher:
    """The run's teacher, trained here (under DDP by the whole group, this being rank 0) or
    loaded from its file; frozen and re-scored."""
    run = teacher_run(teacher, student_run)
    num_classes = run.data.num_classes or loaders_for(run, device, workdir).num_classes
    channels_last = run.execution.memory_format == "channels_last"
    apply_precision(run.execution.precision)
    if not teacher.trained_here:
        return _load_given(teacher, run, tracker=tracker, workdir=workdir, device=device,
                           num_classes=num_classes, channels_last=channels_last, log=log)
    target = _teacher_file(workdir, run.run_key)
    with file_lock(Path(workdir) / "locks" / f"teacher-{run.run_key}.lock"):
        record = tracker.find(run.run_key)
        if target.is_file():
            _quarantine_if_unreadable(teacher.arch, target, num_classes, log)
        if not target.is_file() and _fetch_from_store(record, tracker, target):
            log(f"teacher {teacher.arch}: trained by another worker, weights from the store")
        if not target.is_file():  # the committed file, not the store: shards may use a store each
            log(
                f"teacher {teacher.arch}: training "
                f"({teacher.recipe.epochs} epochs, seed {teacher.seed})"
            )
            outcome = execute_run(
                run,
                tracker=tracker,
                workdir=workdir,
                device=device,
                teacher=None,
                role="teacher",
                stop_requested=stop_requested,
                group=group,
            )
            if outcome.status == KILLED:
                raise TeacherInterrupted(f"teacher {teacher.arch} interrupted")
            if outcome.status != FINISHED:
                raise TeacherFailed(
                    f"teacher {teacher.arch} {outcome.status.lower()}: {outcome.reason}"
                )
            with atomic_write(target, "wb") as handle, open(outcome.weights, "rb") as source:
                shutil.copyfileobj(source, handle)
            record = tracker.find(run.run_key)
        else:
            log(f"teacher {teacher.arch}: already trained ({target.name})")
    model, sha = load_frozen(teacher.arch, target, num_classes, device, channels_last)
    if record is not None and record.tags.get("teacher_sha256") != sha:
        tracker.set_tags(record.run_id, {"teacher_sha256": sha})
    top1 = _rescore(model, run, sha, device, workdir)
    return LoadedTeacher(teacher.arch, model, sha, top1, str(target))
