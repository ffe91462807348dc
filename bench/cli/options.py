"""Options and values several commands share: the matrix options, the device, the matrix.

Light at import (the parser is built from it before any command runs): torch and the spec are
imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from bench.spec import Matrix

REPORTS = Path("reports")


def add_matrix_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", default="smoke",
                        help="shipped matrix name or path to a .yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any matrix field, e.g. --set recipe.epochs=2 (repeatable)",
    )
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    parser.add_argument("--subset-per-class", type=int,
                        help="train on the first N images per class")
    add_store_options(parser)


def add_workdir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        help="data, checkpoints and the MLflow store (default $KDBENCH_HOME or ~/.cache/kdbench)",
    )


def add_store_options(parser: argparse.ArgumentParser) -> None:
    add_workdir_option(parser)
    parser.add_argument(
        "--tracking",
        choices=["mlflow", "none"],
        default="mlflow",
        help="mlflow (sqlite in the workdir, or $MLFLOW_TRACKING_URI) or none (JSON lines)",
    )


def device(name: str | None) -> torch.device:
    """`--device`: cuda or cpu, default cuda where one is available."""
    import torch

    from bench.errors import SpecError

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cuda", "cpu"):
        raise SpecError(f"--device '{name}': expected cuda or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def load_matrix_of(args: argparse.Namespace, on: torch.device) -> Matrix:
    """The matrix as the spec describes it: validated and expanded, the data not yet read."""
    from bench.spec import load_matrix

    return load_matrix(
        args.matrix,
        overrides=args.overrides,
        seeds=getattr(args, "seeds", None),
        subset_per_class=getattr(args, "subset_per_class", None),
        device=on.type,
        teacher_cache=getattr(args, "teacher_cache", "none"),
        precision=getattr(args, "precision", None),
    )


def reported_matrix(args: argparse.Namespace, tracker, records, **filters):
    """The matrix a report or a status describes: the spec's, with the runs the store holds
    (`filters`: which precision, cache or ranks to report)."""
    from bench.report import load_report_matrix

    return load_report_matrix(args.matrix, records, store=tracker.describe(),
                              overrides=args.overrides, seeds=args.seeds,
                              subset_per_class=args.subset_per_class, **filters)
