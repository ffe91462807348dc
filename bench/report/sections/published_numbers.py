"""Published numbers beside ours: diffed only like for like (bench.references.differences)."""

from __future__ import annotations

from bench.references import (
    Ours,
    PublishedTable,
    differences,
    load_setups,
    not_compared_reason,
    teacher_differences,
)
from bench.references.published import Published
from bench.references.setups import PublishedSetup
from bench.report.collect import Results
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.report.stats import Summary, fmt_signed, fmt_summary, welch_p
from bench.spec import Matrix

HEADERS = ["teacher", "student", "method", "ours last", "ours best", "published",
           "metric (runs)", "Δ like for like", "agreement", "source"]


def _not_comparable(reasons: list[str]) -> str:
    return "not comparable: " + "; ".join(reasons)


def _agreement(ours: Summary, pub) -> str:
    if pub.std is not None and pub.runs is not None:
        p = welch_p(ours, pub.top1, pub.std, pub.runs)
        if p is not None:
            verdict = "consistent" if p >= 0.05 else "differs"
            return f"{verdict} (Welch p = {p:.2f}, published ± {pub.std:.2f})"
    ci = ours.ci
    if ci is None:
        return "—"
    inside = "inside" if ci[0] <= pub.top1 <= ci[1] else "outside"
    return f"{inside} our 95% CI; published spread unknown"


def _metric_text(pub, setup: PublishedSetup | None) -> str:
    note = f": {setup.metric_note}" if setup is not None and setup.metric_note else ""
    return f"{pub.metric}{note} ({pub.runs_text})"


def _teacher_score(results: Results, pair) -> float | None:
    score = results.teacher_score(pair)
    return float(score) if score and "/" not in score else None


def teacher_row(matrix, results, published, setups, pair) -> list[str]:
    teacher, student = pair
    dataset = matrix.data.dataset
    pub = published.find(dataset, teacher, student, "teacher") or published.teacher_top1(
        dataset, teacher
    )
    score = results.teacher_score(pair)
    ours_text = f"{score} (re-scored)" if score else "—"
    if pub is None:
        return [*pair, "teacher", ours_text, "", "—", "—", "not published", "", ""]
    setup = setups.get(pub.setup)
    run = next((r for r in matrix.runs if r.teacher and r.teacher.arch == teacher), None)
    reasons = [] if setup is not None else [f"setup '{pub.setup}' is not recorded"]
    if run is not None and setup is not None:
        reasons = teacher_differences(run, setup, Ours(finished_runs=0))
    if reasons:
        delta = _not_comparable(reasons)
    elif score is None or "/" in score:
        delta = "no re-scored teacher" if score is None else "several teacher scores"
    else:
        delta = fmt_signed(float(score) - pub.top1)
    return [*pair, "teacher", ours_text, "", f"{pub.top1:.2f}", _metric_text(pub, None), delta,
            "", pub.source]


def method_row(matrix, results, published, setups, pair, label) -> list[str]:
    teacher, student = pair
    last = results.summary(pair, label, "last")
    best = results.summary(pair, label, "best")
    ours_cols = [fmt_summary(last), fmt_summary(best)]
    cells = results.cells_of(pair, label)
    pub = _published_row(matrix, published, pair, cells)
    if pub is None:
        return [*pair, label, *ours_cols, "not published", "—", "—", "", ""]
    setup = setups.get(pub.setup)
    if setup is None:
        delta = _not_comparable([f"setup '{pub.setup}' is not recorded"])
        return [*pair, label, *ours_cols, f"{pub.top1:.2f}", _metric_text(pub, None), delta, "",
                pub.source]
    ours = {"best": best, "best_val": results.summary(pair, label, "best_val")}.get(
        pub.metric, last
    )
    teacher_top1 = published.teacher_top1(matrix.data.dataset, teacher)
    context = Ours(
        finished_runs=ours.n,
        teacher_top1=_teacher_score(results, pair),
        published_teacher_top1=teacher_top1.top1 if teacher_top1 else None,
    )
    reasons = differences(cells[0].run, pub, setup, context) if cells else ["no cells"]
    if reasons:
        delta, agreement = _not_comparable(reasons), ""
    else:
        delta = f"{fmt_signed(ours.mean - pub.top1)} (ours {pub.metric} − published)"
        agreement = _agreement(ours, pub)
    return [*pair, label, *ours_cols, f"{pub.top1:.2f}", _metric_text(pub, setup), delta,
            agreement, pub.source]


def _published_row(matrix, published, pair, cells) -> Published | None:
    """The row of the cells' method identity (name and on/off options), never of their label."""
    if not cells:
        return None
    method = cells[0].run.method
    return published.find_method(matrix.data.dataset, *pair, method.name, method.params)


def published_section(matrix: Matrix, results: Results, published: PublishedTable) -> list[Block]:
    blocks: list[Block] = [Heading("Published numbers")]
    reason = not_compared_reason(matrix.data)
    if reason:
        return blocks + [Para(f"Not compared: {reason}.")]
    blocks.append(
        Para(
            "Published top-1 (bench/references/published.csv) beside ours. A Δ is shown only "
            "like for like: the published setup (bench/references/setups.yaml: recipe, method "
            "parameters, precision, released teacher, teacher-logit cache, data and pixel "
            "pipeline, metric, number of runs) matches this cell in everything that can change "
            "the result; otherwise the row lists every difference. A published **best**-epoch "
            "number is diffed against our best-epoch mean, a **last**-epoch number against our "
            "last-epoch mean. Teacher rows compare the published accuracy of the released file "
            "with ours as re-scored at load. 'agreement': Welch's test of the two means where "
            "the source gives a spread; otherwise whether the published mean lies in the 95% t "
            "interval of ours, which ignores the published number's own run-to-run spread."
        )
    )
    setups = load_setups()
    rows = []
    for pair in matrix.pairs:
        rows.append(teacher_row(matrix, results, published, setups, pair))
        for label in matrix.method_labels:
            rows.append(method_row(matrix, results, published, setups, pair, label))
    blocks.append(Table(HEADERS, rows, name="published", caption=f"{matrix.name}: published"))
    return blocks + _context_blocks(matrix, results, published)


def _context_blocks(matrix: Matrix, results: Results, published: PublishedTable) -> list[Block]:
    context = []
    for teacher, student in matrix.pairs:
        shown = {
            id(_published_row(matrix, published, (teacher, student), results.cells_of(
                (teacher, student), label)))
            for label in matrix.method_labels
        }
        others = [
            p
            for p in published.for_pair(matrix.data.dataset, teacher, student)
            if p.method != "teacher" and id(p) not in shown
        ]
        if others:
            context.append([teacher, student, "; ".join(_published_brief(p) for p in others)])
    if not context:
        return []
    return [
        Para("Published methods this matrix does not run, for context (never diffed):"),
        Table(["teacher", "student", "published (metric, runs)"], context, name="published_other"),
    ]


def _published_brief(pub) -> str:
    return f"{pub.method} {pub.top1:.2f} ({pub.metric}, {pub.runs_text}; setup {pub.setup})"


@report_section(50)
def published_numbers(ctx: ReportContext) -> list[Block]:
    return published_section(ctx.matrix, ctx.results, ctx.published)
