"""Per seed: each run's last / best top-1, or why it has none."""

from __future__ import annotations

from bench.report.collect import DONE, CellResult, Results
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.spec import Matrix
from bench.store.cell_state import FAILED_STATE


def _seed_cell(cell: CellResult | None) -> str:
    if cell is None:
        return "—"
    if cell.state == DONE:
        return f"{cell.value('last'):.2f} / {cell.value('best'):.2f}"
    if cell.state == FAILED_STATE:
        return "FAILED" + (f" (epoch {cell.epoch})" if cell.epoch else "")
    return cell.state


def per_seed_section(matrix: Matrix, results: Results) -> list[Block]:
    """A row per (pair, method) and, with several teacher seeds, per teacher seed ('—' for a
    run without a teacher, the same under every teacher)."""
    several = len(matrix.teacher_seeds) > 1
    rows = []
    for pair in matrix.pairs:
        for label in matrix.method_labels:
            cells = results.cells_of(pair, label)
            teachers = sorted({c.run.teacher.seed if c.run.teacher else -1 for c in cells})
            for teacher in teachers if several else [None]:
                by_seed = {c.run.seed: c for c in cells if teacher is None
                           or (c.run.teacher.seed if c.run.teacher else -1) == teacher}
                first = [label] if not several else [label, "—" if teacher == -1 else str(teacher)]
                rows.append([*pair, *first] + [_seed_cell(by_seed.get(s)) for s in matrix.seeds])
    headers = ["teacher", "student", "method"] + (["teacher seed"] if several else []) + [
        f"seed {s}" for s in matrix.seeds
    ]
    return [
        Heading("Per seed"),
        Para("Each run's last-epoch / best-epoch test top-1 (%), or why it has none."),
        Table(headers, rows, name="per_seed"),
    ]



@report_section(70)
def per_seed(ctx: ReportContext) -> list[Block]:
    return per_seed_section(ctx.matrix, ctx.results)
