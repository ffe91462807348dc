"""Δ vs the matrix's baseline method, paired by seed, and the best-vs-runner-up leads."""

from __future__ import annotations

from bench.report.collect import Results, other_metric, selection
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.report.stats import Lead, fmt_paired, lead, paired
from bench.spec import Matrix


def _lead_row(pair, metric: str, top: Lead | None) -> list[str]:
    if top is None:
        return [*pair, metric, "—", "—", "—", "no finished runs"]
    if top.runner_up is None:
        return [*pair, metric, top.best, "—", "—", "only one method has runs"]
    if top.difference is None:
        return [*pair, metric, top.best, top.runner_up, "tie", "no: tie"]
    if top.difference.n < 2:
        verdict = "no: under two common seeds"
    else:
        verdict = "yes" if top.clear else "no: interval includes 0"
    return [*pair, metric, top.best, top.runner_up, fmt_paired(top.difference), verdict]


def delta_section(matrix: Matrix, results: Results, metric: str) -> list[Block]:
    base = matrix.baseline
    title = f"Δ vs {base.upper()}"
    blocks: list[Block] = [Heading(f"{title}, paired by seed")]
    formula = (
        f"The baseline is `{base}` (the matrix's `baseline`). For each seed both methods ran, "
        f"d = top-1(method) − top-1({base}) (same seed = same initialisation and data order). "
        "Cell: mean d [95% interval] (n common seeds), the interval mean ± t(0.975, n−1) · "
        "s_d / √n with s_d the sample std of d and t Student's critical value (scipy.stats.t)."
    )
    others = [label for label in matrix.method_labels if label != base]
    if base not in matrix.method_labels:
        blocks.append(Para(f"This matrix has no `{base}` cell: no {title}."))
    else:
        blocks.append(Para(formula))
        for m in (metric, other_metric(metric)):
            rows = []
            for pair in matrix.pairs:
                reference = results.values(pair, base, m)
                deltas = [paired(results.values(pair, lab, m), reference) for lab in others]
                rows.append([*pair] + [fmt_paired(d) for d in deltas])
            blocks += [
                Heading(f"{title}, {selection(m)} top-1 (points)", 3),
                Table(["teacher", "student"] + [f"{lab} − {base}" for lab in others], rows,
                      name=f"delta_{base}_{m}", caption=f"{matrix.name}: {title}, {selection(m)}"),
            ]
    rows = []
    for m in (metric, other_metric(metric)):
        for pair in matrix.pairs:
            rows.append(_lead_row(pair, m, lead(results.row_values(pair, m))))
    blocks += [
        Heading("Leads: best vs runner-up", 3),
        Para(
            "Best and runner-up by mean; their paired difference over common seeds with its 95% "
            "interval; the best is marked only where the interval's lower bound is above 0."
        ),
        Table(["teacher", "student", "epoch", "best", "runner-up", "best − runner-up", "clear"],
              rows, name="leads"),
    ]
    return blocks



@report_section(30)
def delta(ctx: ReportContext) -> list[Block]:
    return delta_section(ctx.matrix, ctx.results, ctx.metric)
