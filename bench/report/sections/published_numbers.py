"""Published numbers beside ours, compared like for like."""

from __future__ import annotations

from bench.report.collect import Results
from bench.report.published import PublishedTable, not_compared_reason
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.report.stats import fmt_signed, fmt_summary
from bench.spec import Matrix


def published_section(matrix: Matrix, results: Results, published: PublishedTable) -> list[Block]:
    blocks: list[Block] = [Heading("Published numbers")]
    reason = not_compared_reason(matrix.data)
    if reason:
        return blocks + [Para(f"Not compared: {reason}.")]
    blocks.append(
        Para(
            "Published top-1 (bench/references/published.csv) beside ours, like for like: a "
            "published **best**-epoch number is diffed against our best-epoch mean, a **last**-"
            "epoch number against our last-epoch mean. Numbers whose epoch is unknown, and those "
            "the CSV marks not comparable, are shown and not diffed. Teacher rows compare the "
            "published teacher with ours as re-scored at load (one evaluation of fixed weights, "
            "so a published last-epoch or pretrained-weights number is the same quantity). "
            "'in CI': whether the published number lies in the 95% t interval of our mean."
        )
    )
    dataset = matrix.data.dataset
    rows = []
    for pair in matrix.pairs:
        teacher, student = pair
        pub = published.find(dataset, teacher, student, "teacher")
        score = results.teacher_score(pair)
        ours = f"{score} (re-scored)" if score else "—"
        if pub is None:
            delta = "not published"
        elif pub.comparable != "yes" or pub.metric == "unknown":
            delta = pub.why_not
        elif score is None or "/" in score:
            delta = "no re-scored teacher" if score is None else "several teacher scores"
        else:
            delta = fmt_signed(float(score) - pub.top1)
        rows.append(_published_row(pair, "teacher", ours, "", pub, delta, ""))
        for label in matrix.method_labels:
            name = results.method_name(label)
            if label != name:
                continue  # variants (ablation cells) have no published counterpart
            last = results.summary(pair, label, "last")
            best = results.summary(pair, label, "best")
            pub = published.find(dataset, teacher, student, name)
            inside = ""
            if pub is None:
                delta = "not published"
            elif not pub.diffable:
                delta = pub.why_not
            else:
                ours_s = last if pub.metric == "last" else best
                if ours_s.n == 0:
                    delta = "no finished runs"
                else:
                    delta = f"{fmt_signed(ours_s.mean - pub.top1)} (ours {pub.metric} − published)"
                    ci = ours_s.ci
                    inside = "—" if ci is None else ("yes" if ci[0] <= pub.top1 <= ci[1] else "no")
            rows.append(
                _published_row(
                    pair, label, fmt_summary(last), fmt_summary(best), pub, delta, inside
                )
            )
    headers = ["teacher", "student", "method", "ours last", "ours best", "published",
               "epoch (runs)", "Δ like for like", "in CI", "source"]  # fmt: skip
    blocks.append(Table(headers, rows, name="published", caption=f"{matrix.name}: published"))
    ours = {results.method_name(label) for label in matrix.method_labels} | {"teacher"}
    context = []
    for teacher, student in matrix.pairs:
        others = [p for p in published.for_pair(dataset, teacher, student) if p.method not in ours]
        if others:
            context.append([teacher, student, "; ".join(_published_brief(p) for p in others)])
    if context:
        blocks += [
            Para("Published methods this matrix does not run, for context (never diffed):"),
            Table(
                ["teacher", "student", "published (epoch, runs)"], context, name="published_other"
            ),
        ]
    return blocks


def _published_brief(pub) -> str:
    runs = f", {pub.runs} run{'' if pub.runs == '1' else 's'}" if pub.runs else ""
    note = "" if pub.comparable == "yes" else f"; {pub.why_not}"
    return f"{pub.method} {pub.top1:.2f} ({pub.metric}{runs}{note})"


def _published_row(pair, method, ours_last, ours_best, pub, delta, inside) -> list[str]:
    if pub is None:
        return [*pair, method, ours_last, ours_best, "—", "—", delta, inside, ""]
    runs = f" ({pub.runs})" if pub.runs else ""
    return [
        *pair,
        method,
        ours_last,
        ours_best,
        f"{pub.top1:.2f}",
        f"{pub.metric}{runs}",
        delta,
        inside,
        pub.source,
    ]



@report_section(50)
def published_numbers(ctx: ReportContext) -> list[Block]:
    return published_section(ctx.matrix, ctx.results, ctx.published)
