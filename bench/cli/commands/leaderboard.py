"""`python -m bench leaderboard`: a static site ranking methods across matrices."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.options import add_store_options
from bench.errors import SpecError
from bench.vocabulary import METRICS
from bench.workdir import resolve_workdir

HELP = "a static site ranking methods across pairs, datasets and matrices"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    parser.add_argument("--matrix", action="append", default=[],
                        help="a matrix to include (repeatable; default: every shipped matrix "
                        "with finished runs in the store)")
    parser.add_argument("--out", default="reports/leaderboard", help="the site's folder")
    parser.add_argument("--metric", choices=METRICS, default="last",
                        help="which test top-1 of each run is ranked")
    add_store_options(parser)


def run(args: argparse.Namespace) -> int:
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
                        "one with --matrix, or run one first")
    board = gather(names, tracker, records, args.metric, workdir)
    index = build_site(board, Path(args.out))
    print(f"wrote {index} ({', '.join(names)})")
    return 0
