"""The commands behind `python -m bench`; argparse namespaces in, exit codes out.

Each command loads only the layers it uses (inside the command), so `bench list` and a spec
error answer without importing the training engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import re
import sys
from pathlib import Path

import torch

from bench.errors import SpecError
from bench.files import within
from bench.spec import Matrix, RunSpec, load_matrix, parse_data, select, shipped_matrices
from bench.store.claims import describe_claims
from bench.store.trackers import describe_store
from bench.workdir import resolve_workdir

REPORTS = Path("reports")


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cuda", "cpu"):
        raise SpecError(f"--device '{name}': expected cuda or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def _matrix(args: argparse.Namespace, device: torch.device) -> Matrix:
    """The matrix as the spec describes it: validated and expanded, the data not yet read."""
    return load_matrix(
        args.matrix,
        overrides=args.overrides,
        seeds=getattr(args, "seeds", None),
        subset_per_class=getattr(args, "subset_per_class", None),
        device=device.type,
        teacher_cache=getattr(args, "teacher_cache", "none"),
        precision=getattr(args, "precision", None),
    )


def _with_present_data(matrix: Matrix, workdir: Path) -> tuple[Matrix, str]:
    """The matrix keyed by the data already on disk, or unkeyed with the reason (nothing is
    generated or downloaded)."""
    from bench.data.datasets.registry import absent_reason, present_hash
    from bench.engine.published_teachers import bind_released_teachers

    data_hash = present_hash(matrix.data, workdir)
    if data_hash is None:
        return matrix, absent_reason(matrix.data, workdir)
    matrix = bind_released_teachers(matrix.bind_data_hash(data_hash), workdir, fetch=False)
    unfetched = sorted({t.arch for t in matrix.teachers if not t.bound})
    if unfetched:
        return matrix, (
            f"released teacher {', '.join(unfetched)} not fetched yet (the sha256 of its file "
            "is part of its students' keys)"
        )
    return matrix, ""


def _print_spec(runs: list[RunSpec], unkeyed_reason: str, where: dict) -> None:
    for run in runs:
        keys = (
            {"cell_key": run.cell_key, "run_key": run.run_key}
            if run.keyed
            else {"cell_key": None, "run_key": None, "keys": f"not yet: {unkeyed_reason}"}
        )
        described = {"name": run.name, **keys, "cell": run.cell(),
                     "execution": dataclasses.asdict(run.execution) | where}  # fmt: skip
        print(json.dumps(described, indent=2, sort_keys=True))


def _dry_run(matrix: Matrix, args: argparse.Namespace, workdir: Path, cells) -> None:
    from bench.engine import runner
    from bench.store.trackers import open_tracker

    print(_execution_line(matrix, args, workdir))
    matrix, unkeyed_reason = _with_present_data(matrix, workdir)
    if unkeyed_reason:
        runs = [run for run in matrix.runs if runner.chosen(run, cells)]
        for run in runs:
            print(f"{'to run':8}  {'(unkeyed)':16}  {run.name}")
        print(f"{len(runs)} cells: {len(runs)} to run; {_by_method(runs)}")
        print(f"cell keys not computed yet: {unkeyed_reason}")
        return
    planned = runner.plan(matrix, open_tracker(args.tracking, workdir), workdir, cells)
    for cell in planned:
        print(f"{cell.state:8}  {cell.run.cell_key}  {cell.run.name}")
    states = sorted({c.state for c in planned})
    counts = {s: sum(c.state == s for c in planned) for s in states}
    print(
        f"{len(planned)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f"; {_by_method([c.run for c in planned])}"
    )


def _submit_slurm(matrix: Matrix, args: argparse.Namespace, workdir: Path, cells) -> int:
    from bench.engine import runner, slurm
    from bench.store.trackers import open_tracker

    options = slurm.SlurmOptions(
        partition=args.slurm_partition, gpus_per_task=args.slurm_gpus_per_task,
        cpus_per_task=args.slurm_cpus_per_task, timeout_min=args.timeout_min,
        array_parallelism=args.array_parallelism, tasks=args.array_size, nodes=args.slurm_nodes,
    )  # fmt: skip
    slurm.check_options(options)
    if options.world_size > 1:
        _check_ddp_matrix(matrix, None)
    shared = slurm.unshared_stores(describe_store(args.tracking, workdir),
                                   describe_claims(workdir, args.claims))  # fmt: skip
    if shared:
        print(f"warning: {shared}", file=sys.stderr)
    if args.dry_run:
        keyed, unkeyed_reason = _with_present_data(matrix.on_ranks(options.world_size), workdir)
        if unkeyed_reason:
            left = sum(runner.chosen(run, cells) for run in matrix.runs)
        else:
            planned = runner.plan(keyed, open_tracker(args.tracking, workdir), workdir, cells)
            left = sum(c.state != runner.DONE for c in planned)
        print(slurm.dry_run_text(matrix.name, left, options, workdir, shared))
        return 0
    tracker = open_tracker(args.tracking, workdir)
    jobs, left = slurm.submit(matrix, tracker=tracker, workdir=workdir, options=options,
                              claims_uri=args.claims, retry_failed=args.retry_failed,
                              cells=cells)  # fmt: skip
    if not jobs:
        print(f"matrix {matrix.name}: nothing to submit, every cell is done")
        return 0
    print(
        f"submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks) for the {left} "
        f"cells left of matrix {matrix.name}; logs in {workdir / 'slurm'}; follow it with "
        f"`python -m bench status --matrix {args.matrix}`"
    )
    return 0


def _by_method(runs: list[RunSpec]) -> str:
    labels: dict[str, int] = {}
    for run in runs:
        labels[run.method.label] = labels.get(run.method.label, 0) + 1
    return ", ".join(f"{label} {n}" for label, n in labels.items())


def _key_like(text: str) -> bool:
    """A cell_key or run_key, which unkeyed runs (data not prepared yet) cannot be matched by."""
    return re.fullmatch(r"[0-9a-f]{8,64}", text) is not None


def cmd_run(args: argparse.Namespace) -> int:
    from bench.engine import distributed, runner

    device = _device(args.device)
    workdir = resolve_workdir(args.workdir)
    _check_execution_options(args)
    matrix = _matrix(args, device)
    cells = runner.parse_cell_filter(args.shard, args.only)
    if args.only is not None and not select(matrix.runs, args.only) and not _key_like(args.only):
        raise SpecError(
            f"--only '{args.only}': no cell of matrix {matrix.name} matches; "
            "use --dry-run to list cell names"
        )
    if distributed.launched():  # torchrun: the runs' keys hold the number of ranks
        if (args.dry_run or args.print_spec) and os.environ["RANK"] != "0":
            return 0  # rank 0 answers
        matrix = matrix.on_ranks(distributed.world_size())
    if args.print_spec:
        matrix, unkeyed_reason = _with_present_data(matrix, workdir)
        chosen = select(matrix.runs, args.print_spec)
        if not chosen:
            raise SpecError(
                f"--print-spec '{args.print_spec}': no cell matches; "
                "use --dry-run to list cell names"
            )
        _print_spec(chosen, unkeyed_reason, {"store": describe_store(args.tracking, workdir),
                                             "claims": describe_claims(workdir, args.claims)})
        return 0
    if args.executor == "slurm":
        return _submit_slurm(matrix, args, workdir, cells)
    if args.dry_run:
        _dry_run(matrix, args, workdir, cells)
        return 0
    if distributed.launched():
        _check_ddp_options(args)
        _check_ddp_matrix(matrix, device)
        group = distributed.from_environment(device.type, args.ddp_timeout_s)
        return _run_ddp(group, matrix, args, distributed.device_for(group, device), workdir,
                        cells)  # fmt: skip
    return _run_local(matrix, args, device, workdir, cells)


def _check_execution_options(args: argparse.Namespace) -> None:
    """Options that cannot work together, or on this machine: one line before anything else."""
    from bench.engine import workers

    if args.executor == "slurm":
        for flag, given in (("--workers", args.workers), ("--gpus", args.gpus),
                            ("--isolate", args.isolate)):  # fmt: skip
            if given is not None and given is not False:
                raise SpecError(
                    f"{flag} {'' if given is True else given} with --executor slurm: each array "
                    "task is one worker on the GPUs SLURM gives it; set --array-parallelism "
                    "(tasks at once) and --slurm-gpus-per-task instead".replace("  ", " ")
                )
    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers {args.workers}: expected 1 or more")
    gpus = workers.parse_gpus(args.gpus)
    present = torch.cuda.device_count()
    missing = [g for g in gpus if int(g) >= present]
    if missing:
        raise SpecError(
            f"--gpus {args.gpus}: this machine has {present} CUDA device(s) (indices "
            f"0..{present - 1}); GPU {', '.join(missing)} does not exist"
            if present
            else f"--gpus {args.gpus}: this machine has no CUDA device"
        )


def _execution_line(matrix: Matrix, args: argparse.Namespace, workdir: Path) -> str:
    """How the cells would execute: device, precision, data backend, store and claims."""
    execution = matrix.runs[0].execution
    if args.executor == "slurm":
        how = "a SLURM job array, one worker per task"
    elif args.gpus:
        how = f"{len(args.gpus.split(','))} GPU(s) x {args.workers_per_gpu} worker(s)"
    elif args.workers:
        how = f"{args.workers} worker process(es)"
    else:
        how = "this process"
    return (
        f"execution: {how}; device {execution.device}, precision {execution.precision}, "
        f"memory {execution.memory_format}, teacher cache {execution.teacher_cache}, data "
        f"{matrix.data.dataset} via {matrix.data.backend}; store "
        f"{describe_store(args.tracking, workdir)}; claims {describe_claims(workdir, args.claims)}"
    )


def _check_ddp_options(args: argparse.Namespace) -> None:
    for flag, given in (("--workers", args.workers is not None), ("--gpus", args.gpus),
                        ("--isolate", args.isolate)):  # fmt: skip
        if given:
            raise SpecError(
                f"{flag}: under torchrun every process is one rank of the same run; start "
                f"--workers without torchrun, or torchrun without {flag}"
            )


def _check_ddp_matrix(matrix: Matrix, device: torch.device | None) -> None:
    """What a DDP run cannot do, refused in one line before any rank starts."""
    import methods

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


def _run_ddp(group, matrix: Matrix, args, device: torch.device, workdir: Path, cells) -> int:
    """One matrix, each run trained by every rank of the group; rank 0 leads."""
    from bench.engine import ranks, runner
    from bench.store.claims import open_claims
    from bench.store.trackers import open_tracker

    def work() -> int:
        claims = open_claims(workdir, args.claims)
        tracker = open_tracker(args.tracking, workdir)
        batch = matrix.recipe.batch_size
        print(
            f"kdbench: matrix {matrix.name} ({len(matrix.runs)} cells) with DDP on {group.world} "
            f"ranks ({group.backend}): global batch {batch}, {batch // group.world} per rank; "
            f"tracking {tracker.describe()}"
        )
        summary = runner.run_matrix(
            matrix, tracker=tracker, workdir=workdir, device=device,
            retry_failed=args.retry_failed, cells=cells, claims=claims, group=group,
        )  # fmt: skip
        return _print_summary(summary)

    code = ranks.lead_or_follow(group, workdir=workdir, device=device, work=work)
    return 0 if code is None else code


def _run_local(matrix: Matrix, args, device: torch.device, workdir: Path, cells) -> int:
    from bench.engine import runner
    from bench.store.trackers import open_tracker

    slots = None
    if args.workers is not None or args.gpus or args.claims:
        from bench.engine import workers
        from bench.store.claims import check_claims

        slots = workers.worker_slots(  # bad values are one line before the store is opened
            args.workers if args.workers is not None else None if args.gpus else 1,
            workers.parse_gpus(args.gpus), args.workers_per_gpu, device.type,
        )  # fmt: skip
        check_claims(workdir, args.claims)
    tracker = open_tracker(args.tracking, workdir)
    print(
        f"kdbench: matrix {matrix.name} ({len(matrix.runs)} cells) on {device.type}; "
        f"tracking {tracker.describe()}"
    )
    if slots is not None:
        summary = workers.run_workers(
            matrix, tracker=tracker, workdir=workdir, slots=slots, claims_uri=args.claims,
            retry_failed=args.retry_failed, cells=cells,
        )  # fmt: skip
    else:
        summary = runner.run_matrix(
            matrix,
            isolate=args.isolate,
            tracker=tracker,
            workdir=workdir,
            device=device,
            retry_failed=args.retry_failed,
            cells=cells,
        )
    return _print_summary(summary)


def _print_summary(summary) -> int:
    print(
        f"done: {len(summary.trained)} trained, {len(summary.skipped)} already finished, "
        f"{len(summary.failed)} failed, {len(summary.blocked)} blocked, "
        f"{len(summary.interrupted)} interrupted, {len(summary.claimed)} claimed elsewhere"
    )
    for name, reason in summary.failed + summary.blocked:
        print(f"  FAILED {name}: {reason}")
    if summary.unreachable:
        print(f"  {len(summary.unreachable)} worker(s) stopped: the tracking server did not "
              "answer; every run is resumable: rerun the same command when it is back")
    if summary.interrupted:
        return 130
    return summary.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from bench.report import load_report_matrix
    from bench.report.status import format_status, matrix_status
    from bench.spec import read_matrix_yaml
    from bench.store.trackers import open_tracker

    read_matrix_yaml(args.matrix)  # an unknown matrix fails here, before the store is opened
    tracker = open_tracker(args.tracking, resolve_workdir(args.workdir))
    records = tracker.search()
    matrix = load_report_matrix(
        args.matrix, records, store=tracker.describe(), overrides=args.overrides,
        seeds=args.seeds, subset_per_class=args.subset_per_class,
    )  # fmt: skip
    print(format_status(matrix, matrix_status(matrix, records)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import load_report_matrix, report_files, write_report
    from bench.spec import read_matrix_yaml
    from bench.store.trackers import open_tracker

    read_matrix_yaml(args.matrix)  # an unknown matrix fails here, before the store is opened
    workdir = resolve_workdir(args.workdir)
    tracker = open_tracker(args.tracking, workdir)
    records = tracker.search()
    matrix = load_report_matrix(
        args.matrix,
        records,
        store=tracker.describe(),
        overrides=args.overrides,
        seeds=args.seeds,
        subset_per_class=args.subset_per_class,
        precision=args.precision,
        teacher_cache=args.teacher_cache,
        ranks=args.ranks,
    )
    out = Path(args.out) if args.out else within(REPORTS, matrix.name)
    fmt = getattr(args, "format", "md")
    from bench.report.costs import load_costs

    costs = load_costs(workdir, matrix.name)
    write_report(matrix, tracker, out, metric=args.metric, fmt=fmt, records=records, costs=costs)
    plots = sorted((out / "plots").glob("*.png"))
    written = ", ".join(str(p) for p in report_files(out, fmt))
    print(f"wrote {written} and {len(plots)} plots in {out / 'plots'}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.report.site import build_site, gather, matrices_with_runs
    from bench.spec import read_matrix_yaml
    from bench.store.trackers import open_tracker

    for name in args.matrix:
        read_matrix_yaml(name)  # an unknown matrix fails before the store is opened
    workdir = resolve_workdir(args.workdir)
    tracker = open_tracker(args.tracking, workdir)
    records = tracker.search()
    names = args.matrix or matrices_with_runs(records)
    if not names:
        raise SpecError(f"no finished runs of a shipped matrix in {tracker.describe()}; name "
                        "one with --matrix, or run one first")  # fmt: skip
    board = gather(names, tracker, records, args.metric, workdir)
    index = build_site(board, Path(args.out))
    print(f"wrote {index} ({', '.join(names)})")
    return 0


def cmd_teachers(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.engine.published_teachers import released_teachers

    teachers = released_teachers(resolve_workdir(args.workdir))
    rows = [
        [t.dataset, t.arch, t.release, t.pin or "not pinned: its sha256 keys its students",
         t.published_top1, t.held]
        for t in teachers
    ]  # fmt: skip
    print(tabulate(rows, ["dataset", "teacher", "release", "sha256 pin", "published top-1",
                          "in the work directory"]))  # fmt: skip
    sources = {t.release: t.pin_source for t in teachers}
    for release, source in sources.items():
        print(f"{release}: pins from {source}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.what == "matrices":
        for name in _matching(args, shipped_matrices()):
            print(name)
    elif args.what == "methods":
        import methods

        for name in _matching(args, methods.available()):
            params = methods.all_params(name)
            needs = methods.needs(name)
            title, note = methods.describe(name)
            wanted = [k for k, v in vars(needs).items() if v]
            print(f"{name}: {title} (needs: {', '.join(wanted) or 'nothing'})")
            print("    " + (", ".join(f"{k}={v}" for k, v in params.items()) or "no parameters"))
            if note:
                print(f"    {note}")
    else:
        import model_zoo

        rows = []
        for name in _found(args, model_zoo.list_models(args.pattern)):
            classes = 100 if model_zoo.input_resolution(name) == 32 else 1000
            info = model_zoo.describe(name, num_classes=classes)
            rows.append(
                [
                    name,
                    info["resolution"],
                    classes,
                    f"{info['params'] / 1e6:.2f}",
                    f"{info['flops'] / 1e6:.1f}",
                    f"{info['macs'] / 1e6:.1f}",
                ]
            )
        headers = ["model", "input px", "classes", "params (M)", "MFLOPs", "MMACs (papers' FLOPs)"]
        print(tabulate(rows, headers=headers))
    return 0


def _matching(args: argparse.Namespace, names: list[str]) -> list[str]:
    return _found(args, [n for n in names if fnmatch.fnmatchcase(n, args.pattern)])


def _found(args: argparse.Namespace, names: list[str]) -> list[str]:
    if not names:
        raise SpecError(f"no {args.what[:-1]} matches '{args.pattern}' (case-sensitive); "
                        f"`python -m bench list {args.what}` lists them all")  # fmt: skip
    return names


def cmd_doctor(args: argparse.Namespace) -> int:
    from bench.cli.doctor import run_doctor

    matrix = _matrix(args, torch.device(args.device or "cpu"))
    return run_doctor(args, resolve_workdir(args.workdir, create=False), matrix)


def cmd_plan(args: argparse.Namespace) -> int:
    from bench.cli.doctor import needed_bytes
    from bench.perf import plan as planning
    from bench.report.costs import load_costs
    from bench.store.trackers import FINISHED, open_tracker

    for flag, value in (("--workers", args.workers), ("--gpus", args.gpus),
                        ("--workers-per-gpu", args.workers_per_gpu),
                        ("--array-parallelism", args.array_parallelism)):  # fmt: skip
        if value is not None and value < 1:
            raise SpecError(f"{flag} {value}: expected 1 or more")
    if args.img_per_s is not None and args.img_per_s <= 0:
        raise SpecError(f"--img-per-s {args.img_per_s}: expected a positive rate")
    device = "cuda" if args.gpus or args.executor == "slurm" else "cpu"
    workdir = resolve_workdir(args.workdir)
    matrix, _ = _with_present_data(_matrix(args, torch.device(device)), workdir)
    done = {r.tags.get("run_key") for r in open_tracker(args.tracking, workdir).search()
            if r.status == FINISHED}  # fmt: skip
    costs = None if args.img_per_s else load_costs(workdir, matrix.name)
    jobs = planning.jobs_left(matrix, workdir, done, costs, args.img_per_s)
    args.workdir_path = workdir
    slots = planning.slots_for(args, device, costs)
    placed = planning.simulate(jobs, slots)
    train, test = planning.images(matrix, workdir)
    cells = [p for p in placed if p.job.kind == "student"]
    wall = max((p.end for p in placed), default=0.0)
    device_hours = sum(p.end - p.start for p in placed) * slots.share / 3600
    disk = needed_bytes(matrix)
    epochs = sum(p.job.epochs for p in cells)
    summary = {
        "matrix": matrix.name, "slots": slots.describe, "cells_left": len(cells),
        "cells": len(matrix.runs),
        "teachers_to_train": sum(p.job.kind == "teacher" for p in placed),
        "training_images": epochs * train, "evaluation_images": epochs * test,
        "device_hours": device_hours, "wall_clock_s": wall, "disk_bytes": disk,
        "throughput": f"--img-per-s {args.img_per_s}" if args.img_per_s else costs.source,
    }  # fmt: skip
    out = Path(args.out) if args.out else within(REPORTS / "plan", matrix.name)
    chart = planning.write_plan(summary, placed, slots, out)
    print(f"plan for matrix {matrix.name} on {slots.describe}; throughput from "
          f"{summary['throughput']}")  # fmt: skip
    print(f"cells left: {len(cells)} of {len(matrix.runs)} (+{summary['teachers_to_train']} "
          f"teachers to train); {epochs * train:,} training and {epochs * test:,} evaluation "
          "images")  # fmt: skip
    print(f"device-hours: {device_hours:.2f}; wall-clock: {wall / 3600:.2f} h ({wall:.0f} s)")
    print("disk: " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in disk.items()))
    print(f"schedule: {chart} (and plan.json beside it)")
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from bench.perf import run_perf

    return run_perf(args, _device(args.device), resolve_workdir(args.workdir))


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data.prepare import prepare

    if args.dataset:
        values = {"dataset": args.dataset, "root": args.root, "backend": args.backend,
                  "resolution": args.resolution}  # fmt: skip
        data = parse_data(values)
    else:
        data = _matrix(args, torch.device("cpu")).data
    for path in prepare(data, resolve_workdir(args.workdir)):
        print(f"ready: {path}")
    return 0
