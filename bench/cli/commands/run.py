"""`python -m bench run`: train every cell of a matrix, through the executor the options pick."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

from bench.cli.options import add_matrix_options, device, load_matrix_of
from bench.errors import SpecError
from bench.vocabulary import PRECISIONS, TEACHER_CACHES
from bench.workdir import resolve_workdir

HELP = "train every cell of a matrix (skips finished ones)"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add_matrix_options(parser)
    parser.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their state")
    parser.add_argument(
        "--print-spec",
        metavar="CELL",
        help="print the resolved spec of matching cells "
        "(glob on the run name, or a cell_key/run_key)",
    )
    parser.add_argument("--retry-failed", action="store_true", help="rerun cells that failed")
    parser.add_argument("--shard", metavar="I/N", help="run only the cells of shard I of N")
    parser.add_argument(
        "--only",
        metavar="CELL",
        help="run only the matching cells (as --print-spec: a glob on the run name, or a "
        "cell_key/run_key); a student's teacher is trained first where it is not yet",
    )
    parser.add_argument(
        "--claims",
        metavar="URI",
        help="postgresql:// URI whose advisory locks claim cells across machines that share only "
        "the store (default $KDBENCH_CLAIMS, else file locks in the workdir)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default on every device, as the published tables; TF32 off), tf32 (CUDA: "
        "fp32 with TF32 matmul/convolutions) or bf16 autocast; losses stay float32",
    )
    parser.add_argument(
        "--teacher-cache",
        choices=TEACHER_CACHES,
        default="none",
        help="CIFAR: look teacher logits up in a cache of all 162 augmentation variants per "
        "image, computed once per teacher (part of run_key)",
    )
    _add_executor_options(parser, chosen)


def _add_executor_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    """`--executor` and each registered executor's own options, in a group per executor. The
    executors are found (which imports the engine) only when `run` is the command."""
    names = "see `python -m bench run --help`"
    if chosen:
        from bench.launch.registry import executors

        found = executors()
        names = ", ".join(found)
        for name, executor in found.items():
            executor.add_options(parser.add_argument_group(f"--executor {name}", executor.help))
    parser.add_argument(
        "--executor",
        default="local",
        help="how the cells run: local (this machine: this process, --workers processes, or "
        f"the ranks torchrun started) or an executor's name: {names}",
    )


def run(args: argparse.Namespace) -> int:
    from bench.engine.binding import bind_present_data
    from bench.engine.cells import parse_cell_filter
    from bench.launch.registry import executor_for
    from bench.launch.start import Launch
    from bench.spec import select

    executor = executor_for(args)
    executor.check(args)  # options that cannot work: one line before anything is read or made
    on = device(args.device)
    workdir = resolve_workdir(args.workdir)
    matrix = load_matrix_of(args, on)
    cells = parse_cell_filter(args.shard, args.only)
    if args.only is not None and not select(matrix.runs, args.only) and not _key_like(args.only):
        raise SpecError(
            f"--only '{args.only}': no cell of matrix {matrix.name} matches; "
            "use --dry-run to list cell names"
        )
    if (args.dry_run or args.print_spec) and not executor.answers(args):
        return 0
    matrix = executor.shape(matrix, args)
    if args.print_spec:
        matrix, unkeyed_reason = bind_present_data(matrix, workdir)
        _print_spec(args, matrix, unkeyed_reason, workdir)
        return 0
    launch = Launch(args, executor, matrix, on, workdir, cells)
    return executor.dry_run(launch) if args.dry_run else executor.run(launch)


def _key_like(text: str) -> bool:
    """A cell_key or run_key, which unkeyed runs (data not prepared yet) cannot be matched by."""
    return re.fullmatch(r"[0-9a-f]{8,64}", text) is not None


def _print_spec(args: argparse.Namespace, matrix, unkeyed_reason: str, workdir) -> None:
    from bench.spec import select
    from bench.store.claims import describe_claims
    from bench.store.trackers import describe_store

    chosen = select(matrix.runs, args.print_spec)
    if not chosen:
        raise SpecError(
            f"--print-spec '{args.print_spec}': no cell matches; use --dry-run to list cell names"
        )
    where = {"store": describe_store(args.tracking, workdir),
             "claims": describe_claims(workdir, args.claims)}
    for spec in chosen:
        keys = (
            {"cell_key": spec.cell_key, "run_key": spec.run_key}
            if spec.keyed
            else {"cell_key": None, "run_key": None, "keys": f"not yet: {unkeyed_reason}"}
        )
        described = {"name": spec.name, **keys, "cell": spec.cell(),
                     "execution": dataclasses.asdict(spec.execution) | where}
        print(json.dumps(described, indent=2, sort_keys=True))
