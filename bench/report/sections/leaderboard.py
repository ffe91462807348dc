"""Leaderboard: pairs x methods, mean ± std (n) of the primary and the other metric."""

from __future__ import annotations

from bench.report import across
from bench.report.collect import CellResult, Results, other_metric, selection
from bench.report.render import Block, Heading, Para, Table, bold
from bench.report.sections import ReportContext, report_section
from bench.report.stats import fmt_summary, lead, summarize
from bench.spec import Matrix


def leaderboard(
    matrix: Matrix,
    results: list[CellResult] | Results,
    metric: str,
    labels: list[str] | None = None,
) -> list[list]:
    """Rows: teacher (re-scored top-1), student, then mean ± std (n) per method label (in
    `labels`' order; default the matrix's); the best cell is wrapped in ⟦ ⟧ where its lead over the
    runner-up is clear (see `lead`)."""
    if not isinstance(results, Results):
        results = Results(matrix, results)
    labels = labels or list(matrix.method_labels)
    rows = []
    for pair in matrix.pairs:
        teacher, student = pair
        score = results.teacher_score(pair)
        row = [f"{teacher} ({score})" if score else teacher, student]
        values = results.row_values(pair, metric)
        top = lead(values)
        for label in labels:
            text = fmt_summary(summarize(list(values[label].values())))
            row.append(bold(text) if top is not None and top.clear and label == top.best else text)
        rows.append(row)
    return rows


def mean_ranks(matrix: Matrix, results: Results, metric: str) -> list[tuple[str, float, int]]:
    """(label, mean rank, pairs ranked), best first: within each pair the methods with a finished
    run are ranked by mean top-1 (1 = best, ties share the mean of their ranks), and a method's
    ranks are averaged over the pairs where it has one."""
    means = {
        pair: {
            label: summarize(list(values.values())).mean
            for label, values in results.row_values(pair, metric).items()
            if values
        }
        for pair in matrix.pairs
    }
    found = across.ranks_per_block(means)
    ranks = {label: found.get(label, []) for label in matrix.method_labels}
    ranked = [(label, sum(r) / len(r), len(r)) for label, r in ranks.items() if r]
    return sorted(ranked, key=lambda item: item[1])


def _rank_table(matrix: Matrix, results: Results, metric: str) -> list[Block]:
    ranked = mean_ranks(matrix, results, metric)
    if len(matrix.pairs) < 2 or len(ranked) < 2:
        return []
    rows = [[label, f"{rank:.2f}", str(n)] for label, rank, n in ranked]
    return [
        Heading(f"Methods by mean rank over the pairs ({metric}-epoch)", 3),
        Para(
            "Within each pair the methods with finished runs are ranked by mean top-1 (1 = best; "
            "ties share their mean rank); a method's ranks are averaged over the pairs where it "
            "ran. A rank ignores the size of the differences: read it with the intervals above."
        ),
        Table(["method", "mean rank", "pairs"], rows, name=f"mean_rank_{metric}"),
    ]


def by_rank(matrix: Matrix, results: Results, metric: str) -> list[str]:
    """Method labels best mean rank first; methods without a rank keep the matrix's order."""
    ranked = [label for label, _, _ in mean_ranks(matrix, results, metric)]
    return ranked + [label for label in matrix.method_labels if label not in ranked]


def leaderboard_section(matrix: Matrix, results: Results, metric: str) -> list[Block]:
    labels = by_rank(matrix, results, metric)
    headers = ["teacher (top-1)", "student"] + labels
    other = other_metric(metric)
    note = (
        "Cells: mean ± sample std (n finished seeds) of the {m} test top-1 (%); the "
        "teacher's re-scored test top-1 is beside its name. **Bold**: the best method of the row, "
        "only where its lead over the runner-up is clear: the paired difference best − runner-up "
        "over their common seeds has a 95% interval whose lower bound is above 0 (see the leads "
        "table below). '—': no finished run. Methods are sorted by their mean rank over the "
        "pairs (best first)."
    )
    chosen, beside = selection(metric), selection(other)
    return [
        Heading(f"Leaderboard: {chosen} test top-1 (%)"),
        Para(note.format(m=chosen)),
        Table(headers, leaderboard(matrix, results, metric, labels), name=f"leaderboard_{metric}",
              caption=f"{matrix.name}: {chosen} test top-1 (%), mean ± std (n)"),
        *_rank_table(matrix, results, metric),
        Heading(f"{beside[0].upper()}{beside[1:]} test top-1 (%)", 3),
        Table(headers, leaderboard(matrix, results, other, labels), name=f"leaderboard_{other}",
              caption=f"{matrix.name}: {beside} test top-1 (%), mean ± std (n)"),
    ]



@report_section(20)
def leaderboard_blocks(ctx: ReportContext) -> list[Block]:
    return leaderboard_section(ctx.matrix, ctx.results, ctx.metric)
