"""The index: methods ranked by their aggregate, per filter (all blocks, each dataset, each pair
family), with the tests' verdict in words and the figures."""

from __future__ import annotations

import math

from bench.report.site.board import Board, slug
from bench.report.site.html import cell, esc, link, table
from bench.report.site.ranking import MethodRow, Ranking

NA = "—"


def _aggregate(a) -> tuple[str, float | None]:
    if a is None:
        return NA, None
    return f"{a.value:+.2f} [{a.low:+.2f}, {a.high:+.2f}] ({a.blocks})", a.value


def index_headers(board: Board, ranking: Ranking) -> list[str]:
    reference = board.reference or board.baseline
    datasets = list(dict.fromkeys(b.dataset for b in ranking.blocks))
    return [
        "#",
        "method",
        "mean rank",
        f"IQM Δ vs {reference} [95%] (blocks)",
        f"IQM Δ vs {board.baseline} [95%] (blocks)",
        f"wins / ties / losses vs {board.baseline}",
        f"time per image vs {board.baseline}",
        *[f"Δ vs {reference}: {d}" for d in datasets],
    ]


def index_values(board: Board, ranking: Ranking, position: int, row: MethodRow) -> list:
    """(text, sort value) per column: what the page shows and the CSV writes."""
    datasets = list(dict.fromkeys(b.dataset for b in ranking.blocks))
    ref_text, ref_value = _aggregate(row.vs_reference)
    base_text, base_value = _aggregate(row.vs_baseline)
    wins = (
        (f"{row.wins} / {row.ties} / {row.losses}", row.wins - row.losses)
        if row.label != board.baseline
        else (NA, None)
    )
    return [
        (str(position), position),
        (row.label, row.label),
        (NA if row.mean_rank is None else f"{row.mean_rank:.2f}", row.mean_rank),
        (ref_text, ref_value),
        (base_text, base_value),
        wins,
        (NA if row.cost is None else f"{row.cost:.2f}×", row.cost),
        *[
            (f"{row.per_dataset[d]:+.2f}", row.per_dataset[d])
            if d in row.per_dataset
            else (NA, None)
            for d in datasets
        ],
    ]


def ranking_table(board: Board, ranking: Ranking) -> str:
    rows = []
    for position, row in enumerate(ranking.rows, start=1):
        values = index_values(board, ranking, position, row)
        cells = [cell(esc(text), value) for text, value in values]
        cells[1] = cell(link(f"methods/{slug(row.label)}.html", row.label), row.label, "text")
        rows.append(cells)
    return table(index_headers(board, ranking), rows, f"ranking-{slug(ranking.name)}")


def _pairs_table(ranking: Ranking) -> str:
    labels = ranking.tested
    if len(labels) < 2 or not ranking.pairs:
        return ""
    rows = [
        [cell(esc(a), a, "text")]
        + [
            cell(
                NA
                if a == b or math.isnan(ranking.pairs[(a, b)])
                else f"{ranking.pairs[(a, b)]:.3g}",
                None if a == b else ranking.pairs[(a, b)],
            )
            for b in labels
        ]
        for a in labels
    ]
    return (
        "<p>Holm-adjusted p of Wilcoxon's signed-rank test between the block means of each "
        "pair of methods (the methods present in every block):</p>"
        + table(["method", *labels], rows, f"wilcoxon-{slug(ranking.name)}")
    )


def section(board: Board, ranking: Ranking, figures: dict[str, str], hidden: bool) -> str:
    parts = [
        f'<section data-filter="{esc(ranking.name)}"{" hidden" if hidden else ""}>',
        f"<h2>{esc(ranking.name)}: {len(ranking.blocks)} "
        f"block{'s' if len(ranking.blocks) != 1 else ''}</h2>",
        f'<p class="note">{esc(ranking.words)}</p>',
        ranking_table(board, ranking),
        _pairs_table(ranking),
    ]
    for title, src in figures.items():
        parts.append(f'<h3>{esc(title)}</h3><img src="{esc(src)}" alt="{esc(title)}">')
    parts.append("</section>")
    return "".join(parts)
