"""`python -m bench data prepare`: download or generate a dataset, write its FFCV files."""

from __future__ import annotations

import argparse

from bench.cli.options import add_workdir_option, load_matrix_of
from bench.workdir import resolve_workdir

HELP = "prepare datasets: download/generate, write FFCV .beton"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    parser.add_argument("action", choices=["prepare"])
    parser.add_argument(
        "dataset",
        nargs="?",
        help="cifar100, cifar10, synthetic, imagenet or imagefolder "
        "(prepared for the ffcv backend); default: the data of --matrix",
    )
    parser.add_argument("--root", help="where the dataset is (default: under the workdir)")
    parser.add_argument("--resolution", type=int, help="image folders: the side to prepare at")
    parser.add_argument("--backend", default="ffcv", choices=["torch", "memory", "gpu", "ffcv"])
    parser.add_argument("--matrix", default="smoke", help="prepare the data of this matrix")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    add_workdir_option(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.data.prepare import prepare
    from bench.spec import parse_data

    if args.dataset:
        values = {"dataset": args.dataset, "root": args.root, "backend": args.backend,
                  "resolution": args.resolution}
        data = parse_data(values)
    else:
        data = load_matrix_of(args, torch.device("cpu")).data
    for path in prepare(data, resolve_workdir(args.workdir)):
        print(f"ready: {path}")
    return 0
