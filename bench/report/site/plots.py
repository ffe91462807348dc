"""The leaderboard's figures, as SVG files of the site: the critical-difference diagram, the
probability-of-improvement heatmap, accuracy against cost with its Pareto front."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.files import atomic_path
from bench.report import across
from bench.report.collect import DONE
from bench.report.sections.curves import PLOT_METRIC, fetch_histories, pair_figures
from bench.report.site.ranking import Ranking


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})  # the same store, the same bytes
    return path


def cd_diagram(ranking: Ranking, path: Path) -> Path | None:
    """Mean ranks on an axis; methods Wilcoxon-Holm cannot tell apart joined by a bar
    (scikit-posthocs' critical_difference_diagram)."""
    import pandas as pd
    import scikit_posthocs as sp

    if len(ranking.tested) < 2 or not ranking.pairs:
        return None
    means = across.block_means(
        {b.key: {m: list(b.runs[m].values()) for m in ranking.tested} for b in ranking.blocks}
    )
    ranks = across.mean_ranks(means, ranking.tested)
    matrix = pd.DataFrame(1.0, index=ranking.tested, columns=ranking.tested)
    for (a, b), p in ranking.pairs.items():
        matrix.loc[a, b] = 1.0 if math.isnan(p) else p
    fig = _figure(8.0, 0.8 + 0.35 * len(ranking.tested))
    ax = fig.add_axes((0.22, 0.08, 0.56, 0.72))  # room for the labels on both sides
    sp.critical_difference_diagram(pd.Series(ranks), matrix, ax=ax)
    ax.set_title(f"Mean rank over {len(ranking.blocks)} blocks (1 = best)", fontsize=9)
    return _save(fig, path)


def improvement_heatmap(ranking: Ranking, path: Path) -> Path | None:
    labels = [row.label for row in ranking.rows]
    if len(labels) < 2:
        return None
    size = 1.2 + 0.55 * len(labels)
    fig = _figure(size + 1.0, size)
    ax = fig.add_axes((0.25, 0.25, 0.65, 0.65))
    grid = [[ranking.improvement.get((a, b)) if a != b else None for b in labels] for a in labels]
    shown = [[math.nan if v is None else v for v in row] for row in grid]
    image = ax.imshow(shown, vmin=0, vmax=1, cmap="RdBu")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value is not None:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("B")
    ax.set_ylabel("A")
    ax.set_title("P(A > B), averaged over blocks", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)


def pareto(points: dict[str, tuple[float, float]]) -> list[str]:
    """Methods no other beats on both: lower cost and higher improvement (ties kept)."""
    front = []
    for label, (cost, gain) in points.items():
        dominated = any(
            c <= cost and g >= gain and (c, g) != (cost, gain)
            for other, (c, g) in points.items()
            if other != label
        )
        if not dominated:
            front.append(label)
    return sorted(front, key=lambda label: points[label][0])


def cost_plot(ranking: Ranking, path: Path) -> tuple[Path | None, list[str]]:
    points = {}
    for row in ranking.rows:
        if row.cost is not None and row.score is not None:
            points[row.label] = (row.cost, row.score)
    if not points:
        return None, []
    front = pareto(points)
    fig = _figure(6.0, 4.0)
    ax = fig.add_axes((0.12, 0.14, 0.83, 0.76))
    for label, (cost, gain) in points.items():
        ax.scatter([cost], [gain], s=30, color="tab:red" if label in front else "tab:blue")
        ax.annotate(label, (cost, gain), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.plot(
        [points[f][0] for f in front],
        [points[f][1] for f in front],
        color="tab:red",
        linewidth=1,
        label="Pareto front",
    )
    ax.set_xlabel(f"time per training image relative to {ranking.baseline}")
    ax.set_ylabel("IQM improvement (points)")
    ax.legend(fontsize=8)
    return _save(fig, path), front


def block_curves(board, out: Path) -> dict[str, str]:
    """Per block: test top-1 per epoch of every method (mean over seeds, min-max band), from the
    first matrix that reports it; block key -> the SVG's path in the site."""
    if board.tracker is None:
        return {}
    made: dict[str, str] = {}
    by_source: dict[int, tuple] = {}
    for block in board.blocks:
        matrix, results = block.sources[0]
        by_source.setdefault(id(results), (matrix, results, []))[2].append(block)
    for matrix, results, blocks in by_source.values():
        finished = [c.record.run_id for c in results.cells if c.state == DONE]
        histories = fetch_histories(board.tracker, finished, PLOT_METRIC)
        figures = pair_figures(matrix, results, histories, board.metric)
        for block in blocks:
            figure = figures.get((block.teacher, block.student), {}).get("curves")
            if figure is not None:
                name = f"curves-{block.page.removeprefix('pairs/').removesuffix('.html')}.svg"
                _save(figure, out / "figures" / name)
                made[block.key] = f"../figures/{name}"
    return made
