"""`python -m bench plan --matrix M`: what the cells left will cost and how long they will take,
from a small discrete-event simulation of the schedule the workers follow.

Jobs are the cells left (finished ones excluded) and the teachers they still need, with the
teacher-logit cache built once per teacher after it. A free slot (a worker) takes the first job
whose teacher is done, as the cell loop does; a job lasts its epochs' training and evaluation
images over the run's throughput, plus a fixed cost per run. SLURM requeues add the expected loss
of each preemption (half an epoch and the requeue). The schedule is drawn as a Gantt chart."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from bench.errors import SpecError
from bench.files import atomic_write_text, within
from bench.report.costs import Costs
from bench.spec import Matrix, teacher_run

EVAL_SPEEDUP = 3.0  # a forward alone against forward, backward and step: images/s of evaluation
CACHE_VARIANTS = 162  # teacher-logit cache: augmentation variants per CIFAR image
RUN_OVERHEAD_S = 2.0  # per run: model, loaders, the MLflow run, a checkpoint per epoch (CPU)
PARENT_START_S = 3.0  # `bench run` itself: Python, torch, the spec, the data bound, the plan
WORKER_START_S = 6.0  # per worker process: Python, torch, the store, the claims (CPU)
REQUEUE_S = 120.0  # a preempted SLURM task back in the queue and started again
KNOWN_SIZES = {  # dataset -> (train, test) images
    "cifar100": (50_000, 10_000), "cifar10": (50_000, 10_000),
    "imagenet": (1_281_167, 50_000), "tinyimagenet": (100_000, 10_000),
}


@dataclasses.dataclass(frozen=True)
class Job:
    key: str
    name: str
    kind: str  # "teacher", "cache" or "student"
    seconds: float
    after: str | None = None  # the key of the job it waits for
    epochs: int = 1


@dataclasses.dataclass(frozen=True)
class Placed:
    job: Job
    slot: int
    start: float
    end: float


@dataclasses.dataclass(frozen=True)
class Slots:
    """Where jobs run: `count` slots, each running one job at `share` of a device's rate."""

    count: int
    share: float
    describe: str
    preemptions_per_hour: float = 0.0


def images(matrix: Matrix, workdir: Path) -> tuple[int, int]:
    """(training, evaluation) images of one epoch."""
    data = matrix.data
    if data.dataset == "synthetic":
        config = data.synthetic_config
        train = config.classes * config.train_per_class
        test = config.classes * config.test_per_class
    elif data.dataset in KNOWN_SIZES:
        train, test = KNOWN_SIZES[data.dataset]
    else:
        from bench.data.datasets.registry import default_root

        root = default_root(data, workdir)
        train, test = (sum(1 for p in (root / split).rglob("*") if p.is_file())
                       for split in ("train", "val"))
        if not train:
            raise SpecError(f"plan: no images under {root}/train to count; set data.root")
    classes = data.num_classes or (data.synthetic_config.classes
                                   if data.dataset == "synthetic" else 100)
    if data.subset_per_class:
        train = min(train, classes * data.subset_per_class)
    if data.val_per_class:
        train -= classes * data.val_per_class
        test += classes * data.val_per_class
    return train, test


def _rate(costs: Costs | None, given: float | None, pair: str, label: str) -> float:
    if given:
        return given
    speed = costs.speeds.get(pair, {}).get(label) if costs is not None else None
    if not speed:
        raise SpecError(
            f"plan: no throughput for {label} on {pair}; give --img-per-s, or measure it with "
            "`python -m bench perf --matrix M` first"
        )
    return speed


def jobs_left(matrix: Matrix, workdir: Path, done: set[str], costs: Costs | None,
              given: float | None) -> list[Job]:
    """The teachers still to train (and their caches) and the cells left, in the plan's order;
    `done`: the run keys the store holds finished."""
    import model_zoo

    train, test = images(matrix, workdir)
    jobs: dict[str, Job] = {}
    for run in matrix.runs:
        if run.keyed and run.run_key in done:
            continue
        pair = f"{run.teacher.arch}:{run.student}" if run.teacher else _pair_of(matrix, run)
        rate = _rate(costs, given, pair, run.method.label)
        after = None
        if run.teacher is not None and run.teacher.trained_here:
            spec = teacher_run(run.teacher, run)
            after = spec.run_key if spec.keyed else f"teacher {run.teacher.arch} {run.teacher.seed}"
            if after not in done and after not in jobs:
                flops = {m: model_zoo.describe(m, num_classes=matrix.data.num_classes or 100)
                         ["flops"] for m in (run.student, run.teacher.arch)}
                ce = _rate(costs, given, pair, "ce") if not given else given
                teacher_rate = ce * flops[run.student] / flops[run.teacher.arch]
                jobs[after] = Job(after, f"teacher {run.teacher.arch}", "teacher",
                                  _run_seconds(spec.recipe.epochs, train, test, teacher_rate),
                                  epochs=spec.recipe.epochs)
            elif after in done:
                after = None
            if run.execution.teacher_cache != "none" and after is not None:
                cache = f"cache {after}"
                if cache not in jobs:
                    ce = _rate(costs, given, pair, "ce") if not given else given
                    jobs[cache] = Job(cache, f"cache {run.teacher.arch}", "cache",
                                      train * CACHE_VARIANTS / (EVAL_SPEEDUP * ce), after)
                after = cache
        key = run.run_key if run.keyed else run.name
        jobs[key] = Job(key, run.name, "student",
                        _run_seconds(run.recipe.epochs, train, test, rate), after,
                        run.recipe.epochs)
    return sorted(jobs.values(), key=lambda j: j.kind == "student")  # teachers first, stable


def _pair_of(matrix: Matrix, run) -> str:
    """The pair a teacher-less run (ce) is measured on in `bench perf --matrix`."""
    for pair in run.pairs:
        return pair
    return f"none:{run.student}"


def _run_seconds(epochs: int, train: int, test: int, rate: float) -> float:
    return epochs * (train / rate + test / (EVAL_SPEEDUP * rate)) + RUN_OVERHEAD_S


def simulate(jobs: list[Job], slots: Slots) -> list[Placed]:
    """List scheduling: the earliest free slot takes the first job whose teacher is done (it
    waits for the next one to finish when none is); each slot starts after its process does."""
    free = [PARENT_START_S + WORKER_START_S] * slots.count
    done_at: dict[str, float] = {}
    pending, placed = list(jobs), []
    while pending:
        slot = min(range(slots.count), key=free.__getitem__)
        now = free[slot]
        ready = [j for j in pending
                 if j.after is None or done_at.get(j.after, float("inf")) <= now]
        if not ready:
            waits = [done_at[j.after] for j in pending if j.after in done_at]
            if not waits:
                raise SpecError("plan: a job waits for a teacher that is never trained")
            free[slot] = min(w for w in waits if w > now) if any(w > now for w in waits) else now
            continue
        job = ready[0]
        seconds = job.seconds / slots.share
        if slots.preemptions_per_hour:
            epoch = seconds / job.epochs
            seconds += slots.preemptions_per_hour * seconds / 3600 * (epoch / 2 + REQUEUE_S)
        placed.append(Placed(job, slot, now, now + seconds))
        free[slot] = done_at[job.key] = now + seconds
        pending.remove(job)
    return placed


def slots_for(args, device: str, costs: Costs | None = None) -> Slots:
    if args.executor == "slurm":
        return Slots(args.array_parallelism, 1.0, f"a SLURM array of {args.array_parallelism} "
                     "tasks, one GPU each", args.preemptions_per_hour)
    if args.gpus:
        k = args.workers_per_gpu
        speedup, source = runs_per_device_speedup(getattr(args, "workdir_path", None), k)
        return Slots(args.gpus * k, speedup / k, f"{args.gpus} GPU(s) x {k} runs each ({source})")
    workers = args.workers or 1
    threads = max(1, cores() // workers)
    if costs is not None and costs.threads == threads and not getattr(args, "img_per_s", None):
        # measured as each worker runs (its share of the cores): the rate is each worker's
        return Slots(workers, 1.0, f"{workers} worker(s) of {threads} thread(s) on this {device}")
    return Slots(workers, 1.0 / workers, f"{workers} worker(s) on this {device}, sharing it")


def runs_per_device_speedup(workdir: Path | None, k: int) -> tuple[float, str]:
    """How much more K runs on one device do together than one alone, as `bench perf --suite`
    measured it in this work directory; 1 (K runs share one run's rate) where it did not."""
    if k == 1:
        return 1.0, "one run per GPU"
    try:
        measured = json.loads((Path(workdir) / "perf" / "runs-per-device.json").read_text())
        row = next(r for r in measured["rows"] if r["workers"] == k)
        return float(row["ratio_to_first"]), (
            f"K={k} runs do {row['ratio_to_first']:.2f}x one run's work, measured by bench perf "
            f"--suite on {measured['device']}")
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return 1.0, f"a GPU's rate shared by its {k} runs; `bench perf --suite` measures K"


def gantt(placed: list[Placed], slots: Slots, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"teacher": "#d62728", "cache": "#9467bd", "student": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * slots.count))
    for p in placed:
        ax.barh(p.slot, (p.end - p.start) / 3600, left=p.start / 3600, height=0.8,
                color=colours[p.job.kind], edgecolor="white", linewidth=0.5)
    ax.set_xlabel("hours from the start")
    ax.set_ylabel("slot")
    ax.set_yticks(range(slots.count))
    ax.set_title(f"kdbench plan: {slots.describe} (red teachers, purple caches, blue cells)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plan(summary: dict, placed: list[Placed], slots: Slots, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    schedule = [{"job": p.job.name, "kind": p.job.kind, "slot": p.slot, "start_s": p.start,
                 "end_s": p.end} for p in placed]
    atomic_write_text(within(out, "plan.json"),
                      json.dumps(summary | {"schedule": schedule}, indent=1))
    return gantt(placed, slots, within(out, "gantt.png"))


def cores() -> int:
    return os.cpu_count() or 1
