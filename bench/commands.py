"""The commands behind `python -m bench`; argparse namespaces in, exit codes out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.errors import SpecError
from bench.spec import Matrix, load_matrix, select, shipped_matrices
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
    return load_matrix(
        args.matrix,
        overrides=args.overrides,
        seeds=getattr(args, "seeds", None),
        subset_per_class=getattr(args, "subset_per_class", None),
        device=device.type,
        teacher_cache=getattr(args, "teacher_cache", "none"),
        precision=getattr(args, "precision", None),
        workdir=resolve_workdir(args.workdir),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from bench import runner
    from bench.tracking import open_tracker

    device = _device(args.device)
    workdir = resolve_workdir(args.workdir)
    matrix = _matrix(args, device)
    shard = runner.parse_shard(args.shard)
    if args.print_spec:
        chosen = select(matrix.runs, args.print_spec)
        if not chosen:
            raise SpecError(
                f"--print-spec '{args.print_spec}': no cell matches; "
                "use --dry-run to list cell names"
            )
        for run in chosen:
            print(
                json.dumps(
                    {
                        "name": run.name,
                        "cell_key": run.cell_key,
                        "run_key": run.run_key,
                        "cell": run.cell(),
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
        return 0
    tracker = open_tracker(args.tracking, workdir)
    if args.dry_run:
        cells = runner.plan(matrix, tracker, workdir, shard)
        for cell in cells:
            print(f"{cell.state:8}  {cell.run.cell_key}  {cell.run.name}")
        counts = {s: sum(c.state == s for c in cells) for s in sorted({c.state for c in cells})}
        print(f"{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    print(
        f"kdbench: matrix {matrix.name} ({len(matrix.runs)} cells) on {device.type}; "
        f"tracking {tracker.describe()}"
    )
    summary = runner.run_matrix(
        matrix,
        isolate=args.isolate,
        tracker=tracker,
        workdir=workdir,
        device=device,
        retry_failed=args.retry_failed,
        shard=shard,
    )
    print(
        f"done: {len(summary.trained)} trained, {len(summary.skipped)} already finished, "
        f"{len(summary.failed)} failed, {len(summary.blocked)} blocked, "
        f"{len(summary.interrupted)} interrupted, {len(summary.claimed)} claimed elsewhere"
    )
    for name, reason in summary.failed + summary.blocked:
        print(f"  FAILED {name}: {reason}")
    if summary.interrupted:
        return 130
    return summary.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import load_report_matrix, report_files, write_report
    from bench.spec import read_matrix_yaml
    from bench.tracking import open_tracker

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
        workdir=workdir,
    )
    out = Path(args.out) if args.out else REPORTS / matrix.name
    fmt = getattr(args, "format", "md")
    write_report(matrix, tracker, out, metric=args.metric, fmt=fmt, records=records)
    plots = sorted((out / "plots").glob("*.png"))
    written = ", ".join(str(p) for p in report_files(out, fmt))
    print(f"wrote {written} and {len(plots)} plots in {out / 'plots'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.what == "matrices":
        for name in shipped_matrices():
            print(name)
    elif args.what == "methods":
        import methods

        for name in methods.available():
            params = methods.resolve_params(name)
            print(f"{name:6} " + ", ".join(f"{k}={v}" for k, v in params.items()))
    else:
        import model_zoo

        rows = []
        for name in model_zoo.list_models(args.pattern):
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


def cmd_perf(args: argparse.Namespace) -> int:
    from bench.perf import run_perf

    return run_perf(args, _device(args.device), resolve_workdir(args.workdir))


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data.prepare import prepare

    if args.dataset:
        from bench.spec import DataSpec, validate_data

        data = validate_data(DataSpec(dataset=args.dataset, root=args.root, backend=args.backend))
    else:
        data = _matrix(args, torch.device("cpu")).data
    for path in prepare(data, resolve_workdir(args.workdir)):
        print(f"ready: {path}")
    return 0
