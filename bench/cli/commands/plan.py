"""`python -m bench plan`: what the cells left cost and how long they take."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.options import REPORTS, add_matrix_options, load_matrix_of
from bench.errors import SpecError
from bench.files import within
from bench.workdir import resolve_workdir

HELP = ("what the cells left cost and how long they take: device-hours, disk, wall-clock from a "
        "simulation of the schedule, a Gantt chart")


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add_matrix_options(parser)
    parser.add_argument("--workers", type=int, help="worker processes on this machine")
    parser.add_argument("--gpus", type=int, help="GPUs on this machine")
    parser.add_argument("--workers-per-gpu", type=int, default=1, metavar="K")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    parser.add_argument("--array-parallelism", type=int, default=64)
    parser.add_argument("--preemptions-per-hour", type=float, default=0.0,
                        help="SLURM: how often a task is preempted and requeued")
    parser.add_argument("--img-per-s", type=float, metavar="R",
                        help="training images/s of one run alone on a device (default: the "
                        "`bench perf --matrix` measurement in the work directory)")
    parser.add_argument("--out", help="where plan.json and gantt.png go (default reports/plan/M)")


def _check(args: argparse.Namespace) -> None:
    for flag, value in (("--workers", args.workers), ("--gpus", args.gpus),
                        ("--workers-per-gpu", args.workers_per_gpu),
                        ("--array-parallelism", args.array_parallelism)):
        if value is not None and value < 1:
            raise SpecError(f"{flag} {value}: expected 1 or more")
    if args.img_per_s is not None and args.img_per_s <= 0:
        raise SpecError(f"--img-per-s {args.img_per_s}: expected a positive rate")


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.cli.doctor_checks import needed_bytes
    from bench.engine.binding import bind_present_data
    from bench.perf import plan as planning
    from bench.report.costs import load_costs
    from bench.store.trackers import FINISHED, open_tracker

    _check(args)
    device = "cuda" if args.gpus or args.executor == "slurm" else "cpu"
    workdir = resolve_workdir(args.workdir)
    matrix, _ = bind_present_data(load_matrix_of(args, torch.device(device)), workdir)
    done = {r.tags.get("run_key") for r in open_tracker(args.tracking, workdir).search()
            if r.status == FINISHED}
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
    }
    out = Path(args.out) if args.out else within(REPORTS / "plan", matrix.name)
    chart = planning.write_plan(summary, placed, slots, out)
    print(f"plan for matrix {matrix.name} on {slots.describe}; throughput from "
          f"{summary['throughput']}")
    print(f"cells left: {len(cells)} of {len(matrix.runs)} (+{summary['teachers_to_train']} "
          f"teachers to train); {epochs * train:,} training and {epochs * test:,} evaluation "
          "images")
    print(f"device-hours: {device_hours:.2f}; wall-clock: {wall / 3600:.2f} h ({wall:.0f} s)")
    print("disk: " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in disk.items()))
    print(f"schedule: {chart} (and plan.json beside it)")
    return 0
