"""`python -m bench status`: where a matrix stands."""

from __future__ import annotations

import argparse

from bench.cli.options import add_matrix_options, reported_matrix
from bench.workdir import resolve_workdir

HELP = "where a matrix stands: cells per state, running and failed cells"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add_matrix_options(parser)


def run(args: argparse.Namespace) -> int:
    from bench.report.status import format_status, matrix_status
    from bench.spec import read_matrix_yaml
    from bench.store.trackers import open_tracker

    read_matrix_yaml(args.matrix)  # an unknown matrix fails here, before the store is opened
    tracker = open_tracker(args.tracking, resolve_workdir(args.workdir))
    records = tracker.search()
    matrix = reported_matrix(args, tracker, records)
    print(format_status(matrix, matrix_status(matrix, records)))
    return 0
