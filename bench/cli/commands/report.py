"""`python -m bench report`: the comparison report of one matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.options import REPORTS, add_matrix_options, reported_matrix
from bench.files import within
from bench.vocabulary import METRICS, PRECISIONS, TEACHER_CACHES
from bench.workdir import resolve_workdir

HELP = "write the comparison report of a matrix"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add_matrix_options(parser)
    parser.add_argument("--out", help="output folder (default reports/<matrix>)")
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="last",
        help="primary number: the last epoch's test top-1, the best on test (as mdistiller), or "
        "the test top-1 of the best validation epoch (needs data.val_per_class)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="report the runs made at this precision (default: the one most runs used)",
    )
    parser.add_argument(
        "--teacher-cache",
        choices=TEACHER_CACHES,
        help="report the runs made with this teacher-logit cache (default: the most used)",
    )
    parser.add_argument(
        "--ranks",
        type=int,
        help="report the runs made on this many DDP ranks (with BatchNorm, each normalizes "
        "batch/ranks images; default: the number most runs used)",
    )
    parser.add_argument(
        "--format",
        choices=["md", "html", "latex"],
        default="md",
        help="README.md always; html adds README.html, latex adds tables.tex",
    )


def run(args: argparse.Namespace) -> int:
    from bench.report import report_files, write_report
    from bench.report.costs import load_costs
    from bench.spec import read_matrix_yaml
    from bench.store.trackers import open_tracker

    read_matrix_yaml(args.matrix)  # an unknown matrix fails here, before the store is opened
    workdir = resolve_workdir(args.workdir)
    tracker = open_tracker(args.tracking, workdir)
    records = tracker.search()
    matrix = reported_matrix(args, tracker, records, precision=args.precision,
                             teacher_cache=args.teacher_cache, ranks=args.ranks)
    out = Path(args.out) if args.out else within(REPORTS, matrix.name)
    costs = load_costs(workdir, matrix.name)
    write_report(matrix, tracker, out, metric=args.metric, fmt=args.format, records=records,
                 costs=costs)
    plots = sorted((out / "plots").glob("*.png"))
    written = ", ".join(str(p) for p in report_files(out, args.format))
    print(f"wrote {written} and {len(plots)} plots in {out / 'plots'}")
    return 0
