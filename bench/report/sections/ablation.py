"""Ablation: the variants of a method that differ in its boolean switches (e.g. cakd's BCD / SCD /
WCD), each against the method's full cell and against the baseline, paired by seed.

Switches are what the method declares (`methods.switches`, carried by each cell's MethodSpec); no
method is known by name here.
"""

from __future__ import annotations

from bench.report.collect import Results
from bench.report.render import Block, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.report.stats import fmt_paired, fmt_summary, paired, summarize


def _params(results: Results, pair: tuple[str, str], label: str) -> dict:
    cells = results.cells_of(pair, label)
    return cells[0].run.method.params if cells else {}


def _switches(results: Results, labels: list[str]) -> tuple[str, ...]:
    return next((c.run.method.switches for lab in labels for c in results.cells_of_label(lab)),
                ())


def full_label(results: Results, pair: tuple[str, str], name: str, labels: list[str]) -> str:
    """The full cell: the label equal to the method's name, else the variant with the most
    switches on (the first such in matrix order)."""
    if name in labels:
        return name
    switches = _switches(results, labels)
    return max(labels, key=lambda lab: sum(_params(results, pair, lab).get(s) is True
                                            for s in switches))


def variant_text(params: dict, full: dict, switches: tuple[str, ...]) -> str:
    """The switches on, then every other parameter that differs from the full cell."""
    terms = "+".join(key for key in switches if params[key]) or "none"
    diffs = [
        f"{key}={params[key]}"
        for key in sorted(params)
        if key not in switches and params.get(key) != full.get(key)
    ]
    return terms + (f"; {', '.join(diffs)}" if diffs else "")


def ablated_methods(results: Results, labels: tuple[str, ...]) -> dict[str, list[str]]:
    """Method name -> its labels, for the methods run in variants that have switches."""
    by_name: dict[str, list[str]] = {}
    for label in labels:
        by_name.setdefault(results.method_name(label), []).append(label)
    return {
        name: labs
        for name, labs in by_name.items()
        if any(lab != name for lab in labs)
        and _switches(results, labs)
    }


def ablation_table(ctx: ReportContext, name: str, labels: list[str]) -> list[Block]:
    matrix, results, metric, baseline = ctx.matrix, ctx.results, ctx.metric, ctx.baseline
    switches = _switches(results, labels)
    blocks: list[Block] = [
        Heading(
            f"{name.upper()} ablation: {' / '.join(s.upper() for s in switches)} "
            f"({metric}-epoch top-1)"
        ),
        Para(
            f"Each {name} variant of a pair: its mean ± std (n), and its paired Δ [95% interval] "
            f"(n common seeds) against the full {name} cell and against {baseline}. 'terms': the "
            "switches on; then what differs from the full cell."
        ),
    ]
    rows = []
    has_baseline = baseline in matrix.method_labels
    for pair in matrix.pairs:
        full = full_label(results, pair, name, labels)
        full_values = results.values(pair, full, metric)
        full_params = _params(results, pair, full)
        base = results.values(pair, baseline, metric) if has_baseline else None
        for label in sorted(labels, key=lambda lab: lab != full):
            values = results.values(pair, label, metric)
            rows.append(
                [
                    *pair,
                    label + (" (full)" if label == full else ""),
                    variant_text(_params(results, pair, label), full_params, switches),
                    fmt_summary(summarize(list(values.values()))),
                    "—" if label == full else fmt_paired(paired(values, full_values)),
                    f"no {baseline} cell" if base is None else fmt_paired(paired(values, base)),
                ]
            )
    headers = ["teacher", "student", "variant", "terms", "mean ± std (n)", f"Δ vs full {name}",
               f"Δ vs {baseline}"]
    caption = f"{matrix.name}: {name} ablation"
    blocks.append(Table(headers, rows, name=f"ablation_{name}", caption=caption))
    return blocks


@report_section(60)
def ablation(ctx: ReportContext) -> list[Block]:
    blocks: list[Block] = []
    for name, labels in ablated_methods(ctx.results, ctx.matrix.method_labels).items():
        blocks += ablation_table(ctx, name, labels)
    return blocks
