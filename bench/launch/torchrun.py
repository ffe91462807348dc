"""`torchrun --nproc-per-node N -m bench run`: every process is one rank of each run (DDP).

Rank 0 runs the matrix (the store, the claims, the plan, the checkpoints) and orders the other
ranks to train each run with it; they follow its orders until it says the matrix is done.
"""

from __future__ import annotations

import argparse
import os

from bench.engine import distributed, ranks
from bench.errors import SpecError
from bench.launch.process import run_in_process
from bench.launch.registry import Executor, register_executor
from bench.launch.start import Launch
from bench.spec import Matrix
from bench.store.claims import open_claims


@register_executor("torchrun")
class TorchrunRanks(Executor):
    help = "the ranks torchrun started, one DDP group training each run"
    order = 10  # a process torchrun started is a rank, whatever else is asked

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--ddp-timeout-s", type=int, default=600, metavar="S",
            help="under torchrun: how long a collective waits for a silent rank before the run "
            "stops (resumable) naming it",
        )

    def wanted(self, args: argparse.Namespace) -> bool:
        return distributed.launched()

    def check(self, args: argparse.Namespace) -> None:
        if not distributed.launched():
            raise SpecError("--executor torchrun: this process was not started by torchrun "
                            "(no RANK/WORLD_SIZE); start it as `torchrun ... -m bench run`")
        if args.dry_run or args.print_spec:
            return
        for flag, given in (("--workers", args.workers is not None), ("--gpus", args.gpus),
                            ("--isolate", args.isolate)):
            if given:
                raise SpecError(
                    f"{flag}: under torchrun every process is one rank of the same run; start "
                    f"--workers without torchrun, or torchrun without {flag}"
                )

    def answers(self, args: argparse.Namespace) -> bool:
        return os.environ["RANK"] == "0"  # rank 0 answers

    def shape(self, matrix: Matrix, args: argparse.Namespace) -> Matrix:
        return matrix.on_ranks(distributed.world_size())  # the runs' keys hold the ranks

    def how(self, args: argparse.Namespace) -> str:
        return f"{distributed.world_size()} torchrun ranks, one DDP group"

    def run(self, launch: Launch) -> int:
        distributed.check_ddp_matrix(launch.matrix, launch.device)
        group = distributed.from_environment(launch.device.type, launch.args.ddp_timeout_s)
        device = distributed.device_for(group, launch.device)

        def lead() -> int:
            tracker = launch.tracker()
            batch = launch.matrix.recipe.batch_size
            launch.announce(tracker, f"with DDP on {group.world} ranks ({group.backend}): "
                            f"global batch {batch}, {batch // group.world} per rank")
            return launch.finish(run_in_process(
                launch.matrix, tracker=tracker, workdir=launch.workdir, device=device,
                retry_failed=launch.retry_failed, cells=launch.cells,
                claims=open_claims(launch.workdir, launch.args.claims), group=group,
            ))

        code = ranks.lead_or_follow(group, workdir=launch.workdir, device=device, work=lead)
        return 0 if code is None else code
