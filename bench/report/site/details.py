"""A page per block (per-seed runs, paired differences, published numbers with their
comparability, the teacher, how to reproduce) and a page per method (what it is, its parameters,
its published rows, where it wins and loses)."""

from __future__ import annotations

import statistics

from bench.references import load_setups, not_compared_reason
from bench.report.collect import selection
from bench.report.sections.published_numbers import HEADERS, method_row, teacher_row
from bench.report.site.board import Block, Board, slug
from bench.report.site.html import cell, esc, link, page, table
from bench.report.site.ranking import cost
from bench.report.stats import fmt_paired, fmt_summary, paired, summarize

NA = "—"


def _unit_name(unit) -> str:
    return f"t{unit[0]}/s{unit[1]}" if isinstance(unit, tuple) else f"seed {unit}"


def _ui_link(board: Board, run_id: str) -> str:
    """A run id, linked where the store is a server (its UI answers at the same address)."""
    if board.store.startswith(("http://", "https://")):
        return link(f"{board.store.rstrip('/')}/#/runs/{run_id}", run_id)
    return esc(run_id)


def pair_page(board: Board, block: Block, curves: str | None = None) -> str:
    units = sorted({u for v in block.runs.values() for u in v}, key=repr)
    rows = []
    for label, values in block.runs.items():
        s = summarize(list(values.values()))
        delta = (
            paired(values, block.runs.get(board.baseline, {})) if label != board.baseline else None
        )
        rows.append(
            [
                cell(link(f"../methods/{slug(label)}.html", label), label, "text"),
                cell(fmt_summary(s), s.mean),
            ]
            + [cell(f"{values[u]:.2f}" if u in values else NA, values.get(u)) for u in units]
            + [cell(fmt_paired(delta) if delta else NA, delta.mean if delta else None)]
        )
    runs_table = table(
        ["method", "mean ± std (n)", *map(_unit_name, units), f"Δ vs {board.baseline} [95%] (n)"],
        rows,
    )
    teacher = (
        f"<p>Teacher {esc(block.teacher)}: source {esc(block.teacher_source or NA)}; "
        f"re-scored top-1 {esc(', '.join(sorted(block.teacher_scores)) or NA)}; sha256 "
        f"{esc(', '.join(sorted(block.teacher_shas)) or NA)}.</p>"
    )
    published = "".join(_published(board, block, m, r) for m, r in block.sources[:1])
    body = (
        f"<p>{esc(block.family)}; matrices {esc(', '.join(block.matrices))}; the "
        f"{esc(selection(board.metric))} test top-1 (%) of every run, paired by seed.</p>"
        f"{teacher}"
        f"{runs_table}{_curves_image(curves)}<h2>Published numbers</h2>{published}"
        f"<h2>Reproduce this</h2>{_reproduce(board, block)}"
    )
    return page(block.key, body, "../")


def _reproduce(board: Board, block: Block) -> str:
    """Every number of the block with its MLflow run and the command that trains that cell alone
    (its teacher first, where the store lacks it); `bench report` then reads it."""
    rows = [
        [
            cell(esc(label), label, "text"),
            cell(esc(_unit_name(unit)), repr(unit), "text"),
            cell(_ui_link(board, origin.run_id), origin.run_id, "text"),
            cell(f"<code>{esc(origin.command)}</code>", origin.command, "text"),
        ]
        for label, origins in block.origins.items()
        for unit, origin in origins.items()
    ]
    return (
        f"<p>Runs read from {esc(board.store)}.</p>"
        + table(["method", "seed", "MLflow run", "command"], rows)
    )


def _curves_image(src: str | None) -> str:
    if src is None:
        return "<p>No per-epoch history in the store for these runs.</p>"
    return f'<h2>Curves</h2><img src="{esc(src)}" alt="test top-1 per epoch">'


def _published(board: Board, block: Block, matrix, results) -> str:
    reason = not_compared_reason(matrix.data)
    if reason:
        return f"<p>Not compared: {esc(reason)}.</p>"
    pair, setups = (block.teacher, block.student), load_setups()
    rows = [teacher_row(matrix, results, board.published, setups, pair)]
    rows += [
        method_row(matrix, results, board.published, setups, pair, label)
        for label in matrix.method_labels
    ]
    return table(HEADERS, [[cell(esc(v), None, "text") for v in row] for row in rows])


def method_page(board: Board, label: str) -> str:
    title, note, provenance = board.notes.get(label, ("", "", ""))
    params = board.params.get(label, {})
    param_rows = [
        [cell(esc(block), block, "text"), cell(esc(_params_text(p)), None, "text")]
        for block, p in params.items()
    ]
    wins = []
    for block in board.blocks:
        ours, base = block.runs.get(label), block.runs.get(board.baseline)
        if not ours:
            continue
        delta = paired(ours, base) if base and label != board.baseline else None
        wins.append(
            [
                cell(link(f"../{block.page}", block.key), block.key, "text"),
                cell(f"{statistics.fmean(ours.values()):.2f}", statistics.fmean(ours.values())),
                cell(fmt_paired(delta) if delta else NA, delta.mean if delta else None),
            ]
        )
    published = [r for r in board.published.rows if r.method_identity[0] == board.names.get(label)]
    published_rows = [
        [
            cell(esc(v), None, "text")
            for v in (
                r.dataset,
                r.teacher,
                r.student,
                r.method,
                f"{r.top1:.2f}",
                r.metric,
                r.runs_text,
                r.source,
            )
        ]
        for r in published
    ]
    body = (
        f'<p>{esc(title)}</p><p class="note">{esc(note)}</p>'
        f"<p>kdbench method <code>{esc(board.names.get(label, label))}</code>.</p>"
        f"<h2>What it is, and the code it was matched against</h2><p>{esc(provenance)}</p>"
        f"<p>Time per training image relative to {esc(board.baseline)}: "
        f"{esc(_cost_text(board, label))}"
        f" (from {esc(board.cost_source)}).</p>"
        "<h2>Parameters per block (defaults filled in)</h2>"
        + table(["block", "parameters"], param_rows)
        + f"<h2>Per block, against {esc(board.baseline)}</h2>"
        + table(["block", f"mean {board.metric} top-1", f"Δ vs {board.baseline} [95%] (n)"], wins)
        + "<h2>Published rows of this method</h2>"
        + (
            table(
                ["dataset", "teacher", "student", "method", "top-1", "metric", "runs", "source"],
                published_rows,
            )
            if published_rows
            else "<p>None recorded.</p>"
        )
    )
    return page(f"Method {label}", body, "../")


def _cost_text(board: Board, label: str) -> str:
    ratio = cost(board, board.blocks, label)
    return NA if ratio is None else f"{ratio:.2f}×"


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "none"
