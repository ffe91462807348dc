"""Failed, blocked and missing cells, with their reasons."""

from __future__ import annotations

from bench.report.collect import DONE, Results
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section


def incomplete_section(results: Results) -> list[Block]:
    blocks: list[Block] = [Heading("Failed, blocked and missing cells")]
    bad = [c for c in results.cells if c.state != DONE]
    if not bad:
        return blocks + [Para("None: every cell of the matrix has a finished run.")]
    blocks.append(
        Para(
            f"{len(bad)} of {len(results.cells)} cells have no finished run; they are left out of "
            "the means above (n counts the seeds that remain). failed: the run raised or diverged "
            "(reason and epoch as recorded); blocked: its teacher failed, so it never started; "
            "unfinished: interrupted or still running (resumable); missing: never run."
        )
    )
    rows = [
        [
            c.run.name,
            ", ".join(c.run.pairs),
            c.state,
            c.reason,
            c.epoch or "—",
            c.record.run_id if c.record else "—",
            str(c.attempts),
        ]
        for c in sorted(bad, key=lambda c: (c.state, c.run.name))
    ]
    headers = ["cell", "pairs", "state", "reason", "epoch", "run id", "attempts"]
    blocks.append(Table(headers, rows, name="incomplete"))
    return blocks



@report_section(80)
def incomplete(ctx: ReportContext) -> list[Block]:
    return incomplete_section(ctx.results)
