"""`python -m bench perf`: speed measured as ratios within one run, never asserted in tests."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import torch
from tabulate import tabulate

import model_zoo
from bench.engine.environment import device_name
from bench.errors import SpecError
from bench.files import atomic_write_text


def _machine(device: torch.device) -> str:
    return (
        f"{device_name(device)} ({device.type}, {torch.get_num_threads()} threads, "
        f"{platform.machine()})"
    )


def run_perf(args, device: torch.device, workdir: Path) -> int:
    if args.suite:
        from bench.perf.suite import run_suite

        written = run_suite(device, Path(args.out or "reports/perf"), Path.cwd(), _machine(device),
                            workdir)
        print(written.read_text())
        print(f"wrote {written} and {written.with_suffix('.json')}")
        return 0
    modes = (("ddp", args.ddp, _ddp), ("matrix", args.matrix, _matrix),
             ("leaderboard", args.leaderboard, _leaderboard), ("workers", args.workers, _workers),
             ("losses", args.losses, _losses), ("data", args.data, _data))
    key, measure = next(((key, measure) for key, asked, measure in modes if asked),
                        ("training", _training))
    result: dict = {"device": _machine(device), "torch": torch.__version__}
    result |= {key: measure(args, device, workdir)}
    if key == "training":
        result["setup"] = {"pair": args.pair, "method": args.method,
                           "batch_size": args.batch_size, "steps": args.steps}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


def _ddp(args, device: torch.device, workdir: Path) -> list:
    from bench.perf.ddp import format_ddp_table, measure_ddp

    counts = [int(c) for c in args.ddp.split(",") if c.strip().isdigit()]
    if len(counts) != len(args.ddp.split(",")):
        raise SpecError(f"--ddp '{args.ddp}': expected rank counts, e.g. 1,2,4,8")
    # an ImageNet student: --pair's, where one is given, else torchvision's ResNet-18
    given = args.pair != "resnet56:resnet20"
    arch = args.pair.split(":", 1)[-1] if given else "torchvision:resnet18"
    print(f"perf: DDP scaling of {arch} (ce), global batch {args.batch_size}, on "
          f"{_machine(device)}")
    rows = measure_ddp(counts, device=device.type, arch=arch, classes=args.classes,
                       per_class=args.per_class, batch_size=args.batch_size)
    print(format_ddp_table(rows))
    return rows


def _matrix(args, device: torch.device, workdir: Path) -> dict:
    from bench.perf.matrix import format_matrix_costs, measure_matrix
    from bench.spec import load_matrix

    matrix = load_matrix(args.matrix, overrides=args.overrides, device=device.type)
    if args.threads:  # as each of N CPU workers runs: cores // N threads
        torch.set_num_threads(args.threads)
    costs = measure_matrix(matrix, device, workdir, args.steps)
    print(format_matrix_costs(costs, list(matrix.method_labels), matrix.baseline))
    return costs.__dict__


def _leaderboard(args, device: torch.device, workdir: Path) -> dict:
    from bench.perf.leaderboard import format_leaderboard, measure_leaderboard

    row = measure_leaderboard(args.runs)
    print(format_leaderboard(row))
    return row


def _workers(args, device: torch.device, workdir: Path) -> list:
    from bench.perf.workers import format_workers_table, measure_workers

    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        raise SpecError(f"--workers '{args.workers}': expected worker counts, e.g. 1,2")
    rows = measure_workers(counts, device=device.type)
    print(format_workers_table(rows))
    return rows


def _losses(args, device: torch.device, workdir: Path) -> list:
    from bench.perf.losses import format_losses_table, measure_losses

    rows = measure_losses(device=str(device))
    print(format_losses_table(rows))
    return rows


def _data(args, device: torch.device, workdir: Path) -> list:
    from bench.perf.data import format_data_table, measure_data
    from bench.spec import DataSpec

    data = DataSpec(dataset="synthetic", synthetic={"classes": args.classes,
                    "train_per_class": args.per_class, "test_per_class": 1})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows = measure_data(data, workdir, device, backends=backends, batch_size=args.batch_size)
    print(format_data_table(rows))
    return rows


def _training(args, device: torch.device, workdir: Path) -> list:
    from bench.perf.training import PerfSetup, measure_training

    if ":" not in args.pair:
        raise SpecError(f"--pair '{args.pair}': expected TEACHER:STUDENT (resnet56:resnet20)")
    teacher, student = args.pair.split(":", 1)
    for arch in (teacher, student):  # an unknown model is one line before data is made
        model_zoo.input_resolution(arch)
    setup = PerfSetup(teacher, student, args.method, device, args.batch_size, args.steps,
                      args.warmup_steps, args.classes, args.per_class, workdir)
    print(f"perf: {teacher} -> {student}, {args.method}, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup_steps}, on {_machine(device)}")
    rows = measure_training(setup, [b for b in args.backends.split(",") if b],
                            compile_model=args.compile)
    print(tabulate(
        [[r.variant, f"{r.images_per_s:.0f}", f"{r.ratio:.2f}x",
          f"{r.setup_s:.1f}" if r.setup_s else "", r.note] for r in rows],
        headers=["loop", "img/s", "vs naive", "setup s (cache/compile)", "note"],
    ))
    return [dataclasses.asdict(r) for r in rows]
