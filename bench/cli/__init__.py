"""The command line: parse arguments, call the command, print errors as one line."""

from __future__ import annotations

import argparse
import sys

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


def _matrix_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", default="smoke", help="shipped matrix name or path to a .yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any matrix field, e.g. --set recipe.epochs=2 (repeatable)",
    )
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    p.add_argument("--subset-per-class", type=int, help="train on the first N images per class")
    p.add_argument(
        "--workdir",
        help="data, checkpoints and the MLflow store (default $KDBENCH_HOME or ~/.cache/kdbench)",
    )
    p.add_argument(
        "--tracking",
        choices=["mlflow", "none"],
        default="mlflow",
        help="mlflow (sqlite in the workdir, or $MLFLOW_TRACKING_URI) or none (JSON lines)",
    )


class _OneLineErrors(argparse.ArgumentParser):
    """A bad option is one line naming it (argparse's default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m bench",
        description="kdbench: train and compare logit knowledge-distillation methods.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="train every cell of a matrix (skips finished ones)")
    _matrix_options(run)
    run.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    run.add_argument("--dry-run", action="store_true", help="list the cells and their state")
    run.add_argument(
        "--print-spec",
        metavar="CELL",
        help="print the resolved spec of matching cells "
        "(glob on the run name, or a cell_key/run_key)",
    )
    run.add_argument("--retry-failed", action="store_true", help="rerun cells that failed")
    run.add_argument(
        "--isolate", action="store_true", help="run each cell in its own process (for CUDA)"
    )
    run.add_argument("--shard", metavar="I/N", help="run only the cells of shard I of N")
    run.add_argument(
        "--only",
        metavar="CELL",
        help="run only the matching cells (as --print-spec: a glob on the run name, or a "
        "cell_key/run_key); a student's teacher is trained first where it is not yet",
    )
    run.add_argument(
        "--workers",
        type=int,
        help="worker processes on this machine pulling the matrix's cells (default 1: this "
        "process); claims keep each cell to one worker",
    )
    run.add_argument("--gpus", metavar="0,1,...", help="CUDA: workers pinned to these GPUs")
    run.add_argument(
        "--workers-per-gpu", type=int, default=1, metavar="K", help="with --gpus: K runs per GPU"
    )
    run.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local (this machine) or slurm: one submitit job array of workers",
    )
    run.add_argument("--slurm-partition", help="with --executor slurm")
    run.add_argument(
        "--slurm-gpus-per-task",
        type=int,
        default=1,
        help="GPUs of each array task; more than 1: one DDP run across them (a process per GPU)",
    )
    run.add_argument(
        "--slurm-nodes", type=int, default=1, help="nodes of each array task (one DDP run across)"
    )
    run.add_argument("--slurm-cpus-per-task", type=int, help="CPUs of each task")
    run.add_argument("--array-parallelism", type=int, default=64, help="tasks running at once")
    run.add_argument("--array-size", type=int, help="tasks (default: one per cell to do, capped)")
    run.add_argument("--timeout-min", type=int, default=24 * 60, help="time limit of a task")
    run.add_argument(
        "--claims",
        metavar="URI",
        help="postgresql:// URI whose advisory locks claim cells across machines that share only "
        "the store (default $KDBENCH_CLAIMS, else file locks in the workdir)",
    )
    run.add_argument(
        "--ddp-timeout-s",
        type=int,
        default=600,
        metavar="S",
        help="under torchrun: how long a collective waits for a silent rank before the run "
        "stops (resumable) naming it",
    )
    run.add_argument(
        "--precision",
        choices=["fp32", "tf32", "bf16"],
        help="fp32 (default on every device, as the published tables; TF32 off), tf32 (CUDA: "
        "fp32 with TF32 matmul/convolutions) or bf16 autocast; losses stay float32",
    )
    run.add_argument(
        "--teacher-cache",
        choices=["none", "float16", "float32"],
        default="none",
        help="CIFAR: look teacher logits up in a cache of all 162 augmentation variants per "
        "image, computed once per teacher (part of run_key)",
    )

    status = sub.add_parser(
        "status", help="where a matrix stands: cells per state, running and failed cells"
    )
    _matrix_options(status)

    report = sub.add_parser("report", help="write the comparison report of a matrix")
    _matrix_options(report)
    report.add_argument("--out", help="output folder (default reports/<matrix>)")
    report.add_argument(
        "--metric",
        choices=["last", "best", "best_val"],
        default="last",
        help="primary number: the last epoch's test top-1, the best on test (as mdistiller), or "
        "the test top-1 of the best validation epoch (needs data.val_per_class)",
    )
    report.add_argument(
        "--precision",
        choices=["fp32", "tf32", "bf16"],
        help="report the runs made at this precision (default: the one most runs used)",
    )
    report.add_argument(
        "--teacher-cache",
        choices=["none", "float16", "float32"],
        help="report the runs made with this teacher-logit cache (default: the most used)",
    )
    report.add_argument(
        "--ranks",
        type=int,
        help="report the runs made on this many DDP ranks (with BatchNorm, each normalizes "
        "batch/ranks images; default: the number most runs used)",
    )
    report.add_argument(
        "--format",
        choices=["md", "html", "latex"],
        default="md",
        help="README.md always; html adds README.html, latex adds tables.tex",
    )

    board = sub.add_parser(
        "leaderboard", help="a static site ranking methods across pairs, datasets and matrices"
    )
    board.add_argument("--matrix", action="append", default=[],
                       help="a matrix to include (repeatable; default: every shipped matrix "
                       "with finished runs in the store)")  # fmt: skip
    board.add_argument("--out", default="reports/leaderboard", help="the site's folder")
    board.add_argument("--metric", choices=["last", "best", "best_val"], default="last",
                       help="which test top-1 of each run is ranked")  # fmt: skip
    board.add_argument("--workdir")
    board.add_argument("--tracking", choices=["mlflow", "none"], default="mlflow")

    perf = sub.add_parser("perf", help="measure training speed against a naive loop")
    perf.add_argument("--pair", default="resnet56:resnet20", help="TEACHER:STUDENT")
    perf.add_argument("--method", default="dkd")
    perf.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    perf.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    perf.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    perf.add_argument("--batch-size", type=int, default=64)
    perf.add_argument("--classes", type=int, default=100, help="classes of the generated data")
    perf.add_argument("--per-class", type=int, default=20, help="train images per class")
    perf.add_argument("--backends", default="torch,memory,ffcv", help="comma-separated")
    perf.add_argument("--compile", action="store_true", help="also time torch.compile")
    perf.add_argument("--losses", action="store_true", help="time the loss methods only")
    perf.add_argument("--data", action="store_true", help="time the data backends only")
    perf.add_argument(
        "--workers", metavar="1,2,...", help="matrix throughput (cells/hour) with these workers"
    )
    perf.add_argument(
        "--ddp",
        metavar="1,2,4,8",
        help="DDP scaling: train img/s of one run on each number of ranks (torchrun), as "
        "efficiency against the single process, on a generated 224 px image folder",
    )
    perf.add_argument("--suite", action="store_true", help="the device's proof in one command: "
                      "cuda tests, loop table, fp32-vs-bf16 A/B, runs per device (suite.md/json)")
    perf.add_argument("--out", help="with --suite: the folder for suite.md and suite.json "
                      "(default reports/perf)")
    perf.add_argument("--threads", type=int, help="with --matrix on a CPU: torch threads as "
                      "each of N workers has them (cores // N), for bench plan --workers N")
    perf.add_argument("--matrix", help="time every method's training step on every pair of "
                      "this matrix (kept in the workdir for the report and the leaderboard)")
    perf.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="with --matrix: override a matrix field")
    perf.add_argument("--leaderboard", action="store_true",
                      help="time `bench leaderboard` over a generated store of --runs runs")
    perf.add_argument("--runs", type=int, default=5000, help="with --leaderboard: store size")
    perf.add_argument("--json", help="write the results here (default: print only)")
    perf.add_argument("--workdir")

    data = sub.add_parser("data", help="prepare datasets: download/generate, write FFCV .beton")
    data.add_argument("action", choices=["prepare"])
    data.add_argument(
        "dataset",
        nargs="?",
        help="cifar100, cifar10, synthetic, imagenet or imagefolder "
        "(prepared for the ffcv backend); default: the data of --matrix",
    )
    data.add_argument("--root", help="where the dataset is (default: under the workdir)")
    data.add_argument("--resolution", type=int, help="image folders: the side to prepare at")
    data.add_argument("--backend", default="ffcv", choices=["torch", "memory", "gpu", "ffcv"])
    data.add_argument("--matrix", default="smoke", help="prepare the data of this matrix")
    data.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    data.add_argument("--workdir")

    doctor = sub.add_parser(
        "doctor", help="will the matrix run here? one line per check, and the fix for each failure"
    )
    _matrix_options(doctor)
    doctor.add_argument("--device", help="cpu: the matrix is meant for the CPU (no GPU needed)")
    doctor.add_argument("--claims", metavar="URI", help="the claims database to check")
    doctor.add_argument("--executor", choices=["local", "slurm"], default="local")

    plan = sub.add_parser(
        "plan", help="what the cells left cost and how long they take: device-hours, disk, "
        "wall-clock from a simulation of the schedule, a Gantt chart"
    )
    _matrix_options(plan)
    plan.add_argument("--workers", type=int, help="worker processes on this machine")
    plan.add_argument("--gpus", type=int, help="GPUs on this machine")
    plan.add_argument("--workers-per-gpu", type=int, default=1, metavar="K")
    plan.add_argument("--executor", choices=["local", "slurm"], default="local")
    plan.add_argument("--array-parallelism", type=int, default=64)
    plan.add_argument("--preemptions-per-hour", type=float, default=0.0,
                      help="SLURM: how often a task is preempted and requeued")  # fmt: skip
    plan.add_argument("--img-per-s", type=float, metavar="R",
                      help="training images/s of one run alone on a device (default: the "
                      "`bench perf --matrix` measurement in the work directory)")  # fmt: skip
    plan.add_argument("--out", help="where plan.json and gantt.png go (default reports/plan/M)")

    teachers = sub.add_parser(
        "teachers", help="the released teachers: their sha256 pins and what the workdir holds"
    )
    teachers.add_argument("--workdir")

    listing = sub.add_parser("list", help="list models, methods or matrices")
    listing.add_argument("what", choices=["models", "methods", "matrices"])
    listing.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet*'")
    return parser


INTERRUPTED = "interrupted; rerun the same command to resume"


def main(argv: list[str] | None = None) -> int:
    guard_output()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (one line): the exit code, not an exit
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from bench.cli import commands

        return getattr(commands, f"cmd_{args.command}")(args)
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

