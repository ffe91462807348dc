"""Executors by name: every module of this package registers its own, and a plugin file (a
folder of $KDBENCH_PLUGINS, loaded with the methods) registers another with the same decorator.

An executor is one way of running a matrix's cells (this process, worker processes, torchrun
ranks, a SLURM job array): it adds its options to `bench run`, refuses the ones that cannot work
in one line, says how it would run for the dry run, and runs a `Launch`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bench.errors import SpecError
from bench.registry import Registry

if TYPE_CHECKING:  # the types only: this module stays light, for plugins and the parser
    from bench.launch.start import Launch
    from bench.spec import Matrix

AUTO = "local"  # `--executor local`: this machine, in the way the other options ask for


class Executor:
    """One way of running a matrix. Subclass it and decorate the class with
    `@register_executor("name")`; every hook but `run` has a default."""

    name = ""
    help = ""
    # under `--executor local`, executors are asked in this order whether the options ask for
    # them (`wanted`); the lowest order that answers yes runs the matrix
    order = 100

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        """Add this executor's own options to `bench run`."""

    def wanted(self, args: argparse.Namespace) -> bool:
        """Whether the other options of `--executor local` ask for this executor."""
        return False

    def check(self, args: argparse.Namespace) -> None:
        """Options that cannot work with this executor or on this machine: one line, before
        anything is read or written (raise SpecError)."""

    def answers(self, args: argparse.Namespace) -> bool:
        """Whether this process prints `--dry-run` and `--print-spec` (one of several does)."""
        return True

    def shape(self, matrix: Matrix, args: argparse.Namespace) -> Matrix:
        """The matrix as this executor runs it (its keys hold the number of DDP ranks)."""
        return matrix

    def how(self, args: argparse.Namespace) -> str:
        """The dry run's words for how the cells would execute."""
        return self.help

    def dry_run(self, launch: Launch) -> int:
        """What `--dry-run` prints: by default the cells and their states."""
        return launch.list_cells()

    def run(self, launch: Launch) -> int:
        """Run the matrix's cells; the exit code."""
        raise NotImplementedError


_EXECUTORS: Registry[Executor] = Registry("bench.launch", "executor", reserved=(AUTO,))


def register_executor(name: str):
    """Class decorator: `@register_executor("ray")` makes `--executor ray` run it."""
    return _EXECUTORS.register(name)


def executors() -> dict[str, Executor]:
    """Every executor: this package's modules, and the plugin files the methods loaded."""
    return _EXECUTORS.all()


def executor_for(args: argparse.Namespace) -> Executor:
    """The executor `--executor` names, or under `local` the first the other options ask for."""
    found = executors()
    if args.executor != AUTO:
        if args.executor not in found:
            raise SpecError(f"--executor '{args.executor}': expected one of "
                            f"{', '.join([AUTO, *found])}")
        return found[args.executor]
    return next(e for e in found.values() if e.wanted(args))
