"""`python -m bench list models|methods|matrices`."""

from __future__ import annotations

import argparse
import fnmatch

from bench.errors import SpecError

HELP = "list models, methods or matrices"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    parser.add_argument("what", choices=["models", "methods", "matrices"])
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet*'")


def run(args: argparse.Namespace) -> int:
    if args.what == "matrices":
        from bench.spec import shipped_matrices

        for name in _matching(args, shipped_matrices()):
            print(name)
    elif args.what == "methods":
        _list_methods(args)
    else:
        _list_models(args)
    return 0


def _list_methods(args: argparse.Namespace) -> None:
    import methods

    for name in _matching(args, methods.available()):
        params = methods.all_params(name)
        needs = methods.needs(name)
        title, note = methods.describe(name)
        wanted = [k for k, v in vars(needs).items() if v]
        print(f"{name}: {title} (needs: {', '.join(wanted) or 'nothing'})")
        print("    " + (", ".join(f"{k}={v}" for k, v in params.items()) or "no parameters"))
        if note:
            print(f"    {note}")


def _list_models(args: argparse.Namespace) -> None:
    from tabulate import tabulate

    import model_zoo

    rows = []
    for name in _found(args, model_zoo.list_models(args.pattern)):
        classes = 100 if model_zoo.input_resolution(name) == 32 else 1000
        info = model_zoo.describe(name, num_classes=classes)
        rows.append([name, info["resolution"], classes, f"{info['params'] / 1e6:.2f}",
                     f"{info['flops'] / 1e6:.1f}", f"{info['macs'] / 1e6:.1f}"])
    headers = ["model", "input px", "classes", "params (M)", "MFLOPs", "MMACs (papers' FLOPs)"]
    print(tabulate(rows, headers=headers))


def _matching(args: argparse.Namespace, names: list[str]) -> list[str]:
    return _found(args, [n for n in names if fnmatch.fnmatchcase(n, args.pattern)])


def _found(args: argparse.Namespace, names: list[str]) -> list[str]:
    if not names:
        raise SpecError(f"no {args.what[:-1]} matches '{args.pattern}' (case-sensitive); "
                        f"`python -m bench list {args.what}` lists them all")
    return names
