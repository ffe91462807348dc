"""`python -m bench teachers`: the released teachers, their pins and what the workdir holds."""

from __future__ import annotations

import argparse

from bench.cli.options import add_workdir_option
from bench.workdir import resolve_workdir

HELP = "the published teachers (the authors' released files): their sha256 pins, what is held"


def add_options(parser: argparse.ArgumentParser, chosen: bool) -> None:
    add_workdir_option(parser)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.engine.published_teachers import published_teachers

    teachers = published_teachers(resolve_workdir(args.workdir))
    rows = [
        [t.dataset, t.arch, t.release, t.pin or "not pinned: its sha256 keys its students",
         t.published_top1, t.held]
        for t in teachers
    ]
    print(tabulate(rows, ["dataset", "teacher", "release", "sha256 pin", "published top-1",
                          "in the work directory"]))
    sources = {t.release: t.pin_source for t in teachers}
    for release, source in sources.items():
        print(f"{release}: pins from {source}")
    return 0
