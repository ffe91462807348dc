"""Cost: what each method costs per training image beside how it ranks, because methods are not
all compute-matched (a two-view method runs the student and the teacher twice per image)."""

from __future__ import annotations

import math
import statistics

from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.report.sections.leaderboard import mean_ranks

SPEED = "img_per_s"  # training images per second of a run's last epoch


def _speeds(ctx: ReportContext, pair, label) -> list[float]:
    return [s for c in ctx.results.cells_of(pair, label) if (s := c.value(SPEED)) is not None]


def cost_rows(ctx: ReportContext) -> list[list[str]]:
    """Per method: finished runs with a speed, median img/s, the baseline's img/s over its own
    (per pair, geometric mean over pairs: >1 = slower per image), mean rank."""
    matrix, baseline = ctx.matrix, ctx.baseline
    ranks = {label: rank for label, rank, _ in mean_ranks(matrix, ctx.results, ctx.metric)}
    rows = []
    for label in matrix.method_labels:
        speeds, ratios = [], []
        for pair in matrix.pairs:
            ours, theirs = _speeds(ctx, pair, label), _speeds(ctx, pair, baseline)
            speeds += ours
            if ours and theirs:
                ratios.append(statistics.median(theirs) / statistics.median(ours))
        if not speeds:
            continue
        ratio = math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else None
        if ctx.costs is not None:  # a controlled measurement replaces the runs' own speeds
            ratio = ctx.costs.relative(label, baseline)
        rank = ranks.get(label)
        rows.append([
            label, str(len(speeds)), f"{statistics.median(speeds):.0f}",
            "—" if ratio is None else f"{ratio:.2f}×", "—" if rank is None else f"{rank:.2f}",
        ])
    return rows


@report_section(25)
def cost_blocks(ctx: ReportContext) -> list[Block]:
    rows = cost_rows(ctx)
    if not rows:
        return []
    base = ctx.baseline
    if ctx.costs is not None:
        source = (f"Time per image vs {base}: measured by {ctx.costs.source}: every method's "
                  "full training step on every pair in one process, the ratio of "
                  f"{base}'s img/s to the method's, geometric mean over pairs.")
    else:
        source = (f"Time per image vs {base}: {base}'s img/s over the method's "
                  "in the runs themselves, geometric mean over pairs — not a controlled "
                  "measurement (whatever else ran on the machine counts in it); `python -m bench "
                  "perf --matrix` measures it and this table then uses that.")
    return [
        Heading("Cost per training image"),
        Para(
            "img/s: training images per second in each run's last epoch (median over runs, on "
            f"the devices they ran on). {source} 2.00× = twice the time per image. Mean rank: as "
            "in the leaderboard. A method that sees two views of each image runs the student and "
            "the teacher on both."
        ),
        Table(["method", "runs", "img/s", f"time per image vs {ctx.baseline}", "mean rank"], rows,
              name="cost"),
    ]
