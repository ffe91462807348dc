"""Teacher seeds: where a matrix trains several teachers per pair (`teacher.seeds`), how much of
a method's spread comes from the teacher's seed, and whether its lead over the baseline holds
under every teacher (Bouthillier et al., MLSys 2021: a source of variance held fixed overstates
how sure a comparison is)."""

from __future__ import annotations

import math

from bench.report.collect import Results, selection
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.report.stats import fmt_paired, fmt_signed, paired, variance_split
from bench.spec import Matrix


def _std(variance: float) -> str:
    return f"{math.sqrt(variance):.2f}"


def variance_rows(matrix: Matrix, results: Results, metric: str) -> list[list[str]]:
    rows = []
    for pair in matrix.pairs:
        for label in matrix.method_labels:
            split = variance_split(results.values(pair, label, metric))
            if split is None:
                continue
            share = split.teacher / (split.teacher + split.student) if split.teacher else 0.0
            rows.append([*pair, label, f"{split.teachers} × {split.students}",
                         _std(split.teacher), _std(split.student), f"{share:.0%}"])
    return rows


def lead_rows(matrix: Matrix, results: Results, metric: str) -> list[list[str]]:
    base = matrix.baseline
    rows = []
    for pair in matrix.pairs:
        reference = results.values(pair, base, metric)
        for label in matrix.method_labels:
            if label == base or not reference:
                continue
            ours = results.values(pair, label, metric)
            overall = paired(ours, reference)
            per_teacher = {}
            for seed in matrix.teacher_seeds:
                d = paired({u: v for u, v in ours.items() if u[0] in (seed, None)},
                           {u: v for u, v in reference.items() if u[0] in (seed, None)})
                if d.n:
                    per_teacher[seed] = d.mean
            signs = {d > 0 for d in per_teacher.values()}
            if len(per_teacher) < 2:
                verdict = "too few teacher seeds"
            elif signs == {True}:
                verdict = "ahead under every teacher seed"
            elif signs == {False}:
                verdict = "behind under every teacher seed"
            else:
                verdict = "depends on the teacher seed"
            rows.append([*pair, f"{label} − {base}",
                         ", ".join(f"t{s}: {fmt_signed(d)}" for s, d in per_teacher.items()),
                         fmt_paired(overall), verdict])
    return rows


@report_section(35)
def teacher_seeds(ctx: ReportContext) -> list[Block]:
    matrix, results, metric = ctx.matrix, ctx.results, ctx.metric
    if len(matrix.teacher_seeds) < 2:
        return []
    chosen = selection(metric)
    blocks: list[Block] = [
        Heading("Teacher seeds"),
        Para(
            f"Each pair has {len(matrix.teacher_seeds)} teachers, trained with seeds "
            f"{', '.join(map(str, matrix.teacher_seeds))}; runs are paired by (teacher seed, "
            f"student seed). Split of the {chosen} test top-1's spread (one-way random-effects "
            "ANOVA over teacher seeds, on the student seeds every teacher has): the teacher part "
            "is the standard deviation the teacher's seed adds, the student part the spread over "
            "student seeds under one teacher; 'share' is the teacher part's share of the "
            "variance."
        ),
    ]
    rows = variance_rows(matrix, results, metric)
    if rows:
        blocks.append(Table(["teacher", "student", "method", "teachers × students",
                             "teacher part (std)", "student part (std)", "teacher share"],
                            rows, name=f"variance_split_{metric}"))
    else:
        blocks.append(Para("No cell has two teacher seeds with two common student seeds yet."))
    leads = lead_rows(matrix, results, metric)
    if leads:
        blocks += [
            Para(
                f"Does a method's lead over `{matrix.baseline}` hold across teacher seeds? Per "
                "teacher seed, the mean paired difference over student seeds; then over all "
                "(teacher, student) units with its 95% t interval. A lead that changes sign "
                "with the teacher's seed is not a property of the method alone."
            ),
            Table(["teacher", "student", "difference", "per teacher seed",
                   "all units [95% interval] (n)", "verdict"], leads,
                  name=f"teacher_seed_leads_{metric}"),
        ]
    return blocks
