"""The command line: parse arguments, call the command, print errors as one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from bench.cli.commands import COMMANDS
from bench.errors import BenchError, SpecError
from bench.files import storage_problem
from bench.output import guard_output
from bench.secrets import scrub

EPILOG = """examples:
  python -m bench run --matrix smoke              train the smoke matrix (CPU, minutes)
  python -m bench report --matrix smoke           write reports/smoke/README.md and runs.csv
  python -m bench run --matrix cifar100_full --dry-run
  python -m bench list models                     the model zoo
"""


class _OneLineErrors(argparse.ArgumentParser):
    """A bad option is one line naming it (argparse's default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _command(name: str) -> ModuleType:
    return importlib.import_module(f"bench.cli.commands.{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; `command` names the one about to run (None: all of them),
    whose options that cost imports (the executors' own) are the only ones added."""
    parser = _OneLineErrors(
        prog="python -m bench",
        description="kdbench: train and compare logit knowledge-distillation methods.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _command(name)
        module.add_options(sub.add_parser(name, help=module.HELP), command in (None, name))
    return parser


def _command_in(argv: list[str]) -> str:
    """The command word of a command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), "")


INTERRUPTED = "interrupted; rerun the same command to resume"


def main(argv: list[str] | None = None) -> int:
    guard_output()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (one line): the exit code, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _command(args.command).run(args)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except SpecError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except ValueError as exc:  # a model or a method refusing a value (ModelError, MethodError)
        if type(exc).__module__.split(".")[0] not in ("methods", "model_zoo"):
            raise
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return 1

