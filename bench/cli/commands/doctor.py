"""`python -m bench doctor`: will the matrix run here? (the checks: bench/cli/doctor_checks.py)"""

from __future__ import annotations

import argparse

from bench.cli.options import add_matrix_options, load_matrix_of
from bench.workdir import resolve_workdir

HELP = "will the matrix run here? one line per check, and the fix for each failure"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add_matrix_options(parser)
    parser.add_argument("--device", help="cpu: the matrix is meant for the CPU (no GPU needed)")
    parser.add_argument("--claims", metavar="URI", help="the claims database to check")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.cli.doctor_checks import run_doctor

    matrix = load_matrix_of(args, torch.device(args.device or "cpu"))
    return run_doctor(args, resolve_workdir(args.workdir, create=False), matrix)
