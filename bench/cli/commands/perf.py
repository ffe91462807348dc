"""`python -m bench perf`: speed against a naive loop, and the device's proof (`--suite`)."""

from __future__ import annotations

import argparse

from bench.cli.options import add_workdir_option, device
from bench.workdir import resolve_workdir

HELP = "measure training speed against a naive loop"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add = parser.add_argument
    add("--pair", default="resnet56:resnet20", help="TEACHER:STUDENT")
    add("--method", default="dkd")
    add("--device", help="cuda or cpu (default: cuda if available)")
    add("--steps", type=int, default=20, help="timed steps per variant")
    add("--warmup-steps", type=int, default=3, help="untimed steps first")
    add("--batch-size", type=int, default=64)
    add("--classes", type=int, default=100, help="classes of the generated data")
    add("--per-class", type=int, default=20, help="train images per class")
    add("--backends", default="torch,memory,ffcv", help="comma-separated")
    add("--compile", action="store_true", help="also time torch.compile")
    add("--losses", action="store_true", help="time the loss methods only")
    add("--data", action="store_true", help="time the data backends only")
    add("--workers", metavar="1,2,...", help="matrix throughput (cells/hour) with these workers")
    add("--ddp", metavar="1,2,4,8",
        help="DDP scaling: train img/s of one run on each number of ranks (torchrun), as "
        "efficiency against the single process, on a generated 224 px image folder")
    add("--suite", action="store_true", help="the device's proof in one command: cuda tests, "
        "loop table, fp32-vs-bf16 A/B, runs per device (suite.md/json)")
    add("--out", help="with --suite: the folder for suite.md and suite.json "
        "(default reports/perf)")
    add("--threads", type=int, help="with --matrix on a CPU: torch threads as each of N workers "
        "has them (cores // N), for bench plan --workers N")
    add("--matrix", help="time every method's training step on every pair of this matrix (kept "
        "in the workdir for the report and the leaderboard)")
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="with --matrix: override a matrix field")
    add("--leaderboard", action="store_true",
        help="time `bench leaderboard` over a generated store of --runs runs")
    add("--runs", type=int, default=5000, help="with --leaderboard: store size")
    add("--json", help="write the results here (default: print only)")
    add_workdir_option(parser)


def run(args: argparse.Namespace) -> int:
    from bench.perf import run_perf

    return run_perf(args, device(args.device), resolve_workdir(args.workdir))
