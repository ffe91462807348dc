"""`python -m bench leaderboard`: a static site across pairs, datasets and matrices (index, a page
per block and per method, SVG figures, CSV of every table, leaderboard.json)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from bench.errors import SpecError
from bench.files import atomic_write_text
from bench.report.site import details, plots
from bench.report.site.board import DIFFERENT, SAME, Board, gather, matrices_with_runs, slug
from bench.report.site.html import esc, page
from bench.report.site.index import index_headers, index_values, section
from bench.report.site.ranking import Ranking, rank

SCHEMA_VERSION = 2  # 2: each run carries run_name, run_id and its command; no run_ids


def rankings(board: Board) -> list[Ranking]:
    """All blocks, then each dataset, then each pair family (as the DKD paper splits its table)."""
    out = [rank(board, board.blocks, "all")]
    groups = {d: [b for b in board.blocks if b.dataset == d] for d in board.datasets}
    groups |= {f: [b for b in board.blocks if b.family == f] for f in (SAME, DIFFERENT)}
    for name, blocks in groups.items():
        if blocks and len(blocks) < len(board.blocks):
            out.append(rank(board, blocks, name))
    return out


def _csv(headers: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()


def _figures(ranking: Ranking, out: Path) -> dict[str, str]:
    name = slug(ranking.name)
    made = {
        "Critical-difference diagram": plots.cd_diagram(
            ranking, out / "figures" / f"cd-{name}.svg"
        ),
        "Probability of improvement": plots.improvement_heatmap(
            ranking, out / "figures" / f"improvement-{name}.svg"
        ),
        "Accuracy against cost (Pareto front in red)": plots.cost_plot(
            ranking, out / "figures" / f"cost-{name}.svg"
        )[0],
    }
    return {title: f"figures/{path.name}" for title, path in made.items() if path is not None}


def _json(board: Board, ranks: list[Ranking]) -> dict:
    def aggregate(a):
        return (
            None
            if a is None
            else {"iqm": a.value, "low": a.low, "high": a.high, "blocks": a.blocks}
        )

    def ranking(r: Ranking) -> dict:
        return {
            "filter": r.name,
            "blocks": [b.key for b in r.blocks],
            "verdict": r.words,
            "friedman": None
            if r.friedman is None
            else {
                "statistic": r.friedman.statistic,
                "p": r.friedman.p,
                "blocks": r.friedman.blocks,
                "methods": r.friedman.methods,
                "critical_difference": r.friedman.cd,
            },
            "wilcoxon_holm": [{"a": a, "b": b, "p": p} for (a, b), p in r.pairs.items() if a < b],
            "probability_of_improvement": [
                {"a": a, "b": b, "p": p} for (a, b), p in r.improvement.items() if p is not None
            ],
            "methods": [
                {
                    "label": m.label,
                    "method": board.names.get(m.label),
                    "mean_rank": m.mean_rank,
                    "blocks": m.blocks,
                    "vs_reference": aggregate(m.vs_reference),
                    "vs_baseline": aggregate(m.vs_baseline),
                    "wins": m.wins,
                    "ties": m.ties,
                    "losses": m.losses,
                    "time_per_image_vs_baseline": m.cost,
                    "per_dataset": m.per_dataset,
                }
                for m in r.rows
            ],
        }

    return {
        "schema_version": SCHEMA_VERSION,
        "metric": board.metric,
        "baseline": board.baseline,
        "reference": board.reference,
        "store": board.store,
        "cost_source": board.cost_source,
        "blocks": [
            {
                "key": b.key,
                "dataset": b.dataset,
                "teacher": b.teacher,
                "student": b.student,
                "family": b.family,
                "matrices": b.matrices,
                "page": b.page,
                "runs": {
                    label: [_run_entry(u, v, b.origins[label].get(u)) for u, v in values.items()]
                    for label, values in b.runs.items()
                },
            }
            for b in board.blocks
        ],
        "rankings": [ranking(r) for r in ranks],
    }


def _run_entry(unit, top1: float, origin) -> dict:
    return {
        "unit": list(unit) if isinstance(unit, tuple) else unit,
        "top1": top1,
        "run_name": origin.run_name,
        "run_id": origin.run_id,
        "command": origin.command,
    }


def build_site(board: Board, out: Path) -> Path:
    """Write the site into `out` (replaced whole): index.html, pairs/, methods/, figures/, csv/,
    leaderboard.json."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "leaderboard.json").is_file():
        raise SpecError(
            f"--out {out}: a folder that holds other files than a leaderboard; "
            "give a new or empty folder"
        )
    staging = out.with_name(f".{out.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    ranks = rankings(board)
    sections, select = [], []
    for i, ranking in enumerate(ranks):
        sections.append(section(board, ranking, _figures(ranking, staging), hidden=i > 0))
        count = f"{len(ranking.blocks)} block{'s' if len(ranking.blocks) != 1 else ''}"
        select.append(f'<option value="{esc(ranking.name)}">{esc(ranking.name)} ({count})</option>')
        values = [
            [v for v, _ in index_values(board, ranking, p, row)]
            for p, row in enumerate(ranking.rows, start=1)
        ]
        name = slug(ranking.name)
        atomic_write_text(
            staging / "csv" / f"ranking-{name}.csv", _csv(index_headers(board, ranking), values)
        )
        pairs = sorted(
            (a, b, p, ranking.improvement.get((a, b)))
            for (a, b), p in ranking.pairs.items()
        )
        atomic_write_text(
            staging / "csv" / f"pairs-{name}.csv",
            _csv(["a", "b", "wilcoxon_holm_p", "p_a_beats_b"], pairs),
        )
    blocks = "".join(
        f'<li><a href="{esc(b.page)}">{esc(b.key)}</a> ({esc(b.family)})</li>' for b in board.blocks
    )
    intro = (
        f'<p class="note">Methods ranked by the interquartile mean (IQM) of their per-block '
        f"improvement over {esc(board.reference or board.baseline)} ({esc(board.metric)} "
        f"test top-1), with 95% stratified-bootstrap intervals (seeds resampled within each "
        f"block). A block is one dataset × teacher→student pair. A win or loss against "
        f"{esc(board.baseline)} is a block whose paired 95% interval excludes 0; a tie, one "
        f"that contains it. Cost: training time per image relative to {esc(board.baseline)}, from "
        f"{esc(board.cost_source)}. Every table is also a CSV (csv/) and the whole "
        "leaderboard is leaderboard.json.</p>"
        f'<p><label>Show: <select id="filter">{"".join(select)}</select></label></p>'
    )
    atomic_write_text(
        staging / "index.html",
        page(
            "kdbench leaderboard", intro + "".join(sections) + f"<h2>Blocks</h2><ul>{blocks}</ul>"
        ),
    )
    curves = plots.block_curves(board, staging)
    for block in board.blocks:
        page_text = details.pair_page(board, block, curves.get(block.key))
        atomic_write_text(staging / block.page, page_text)
    for label in board.labels:
        atomic_write_text(
            staging / "methods" / f"{slug(label)}.html", details.method_page(board, label)
        )
    rows = [
        [b.key, label, u if not isinstance(u, tuple) else f"{u[0]}/{u[1]}", v]
        for b in board.blocks
        for label, values in b.runs.items()
        for u, v in values.items()
    ]
    atomic_write_text(
        staging / "csv" / "runs.csv",
        _csv(["block", "method", "seed (teacher/student)", board.metric], rows),
    )
    atomic_write_text(staging / "leaderboard.json", json.dumps(_json(board, ranks), indent=1))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out / "index.html"


__all__ = ["build_site", "gather", "matrices_with_runs"]
