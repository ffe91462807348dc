"""Curves and bars: test top-1 per epoch and the methods of each pair, as PNG files."""

from __future__ import annotations

from pathlib import Path

from bench.files import within
from bench.report import plots as report_plots
from bench.report.collect import DONE, Results, pair_title
from bench.report.render import Block, Heading, Image, Para
from bench.report.sections import ReportContext, report_section
from bench.spec import Matrix

PLOT_METRIC = "test/top1"

def fetch_histories(tracker, run_ids: list[str], key: str) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch values of `key` for many runs, in one bulk read of the tracker."""
    return tracker.histories(run_ids, key)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def pair_figures(
    matrix: Matrix, results: Results, histories: dict[str, list[tuple[int, float]]], metric: str
) -> dict[tuple[str, str], dict]:
    """Per pair: {'curves': Figure, 'bars': Figure}, each present where the pair has data.
    Curves: one line per method with per-epoch history; bars: one per method with runs."""

    colors = report_plots.method_colors(matrix.method_labels)
    figures: dict[tuple[str, str], dict] = {}
    for pair in matrix.pairs:
        title = pair_title(*pair)
        series = {}
        for label in matrix.method_labels:
            by_seed = {
                c.run.seed: histories.get(c.record.run_id, [])
                for c in results.cells_of(pair, label)
                if c.state == DONE
            }
            by_seed = {s: h for s, h in by_seed.items() if h}
            if by_seed:
                series[label] = by_seed
        stats = {label: results.summary(pair, label, metric) for label in matrix.method_labels}
        figures[pair] = {}
        if series:
            figures[pair]["curves"] = report_plots.curves_figure(
                f"{title}: test top-1 per epoch", series, colors
            )
        if any(s.n for s in stats.values()):
            figures[pair]["bars"] = report_plots.bars_figure(
                f"{title}: {metric}-epoch top-1", stats, colors
            )
    return figures


def plots_section(
    matrix: Matrix, results: Results, tracker, out_dir: Path, metric: str
) -> tuple[list[Block], list[Path]]:
    """Fetch the histories of the finished runs, draw and save each pair's figures."""

    finished = [c for c in results.cells if c.state == DONE]
    histories = fetch_histories(tracker, [c.record.run_id for c in finished], PLOT_METRIC)
    blocks: list[Block] = [
        Heading("Curves and bars"),
        Para(
            "Test top-1 per epoch: the mean over seeds, the band from the lowest to the highest "
            f"seed. Bars: {metric}-epoch mean with ± sample std error bars, one per method."
        ),
    ]
    written = []
    for pair, figs in pair_figures(matrix, results, histories, metric).items():
        title = pair_title(*pair)
        slug = _slug(f"{pair[0]}__{pair[1]}")
        blocks.append(Heading(title, 3))
        alts = {"curves": "test top-1 per epoch", "bars": f"{metric}-epoch top-1 by method"}
        for kind, fig in figs.items():
            path = report_plots.save(fig, within(out_dir / "plots", f"{kind}_{slug}.png"))
            written.append(path)
            blocks.append(Image(f"plots/{path.name}", f"{title}: {alts[kind]}"))
        if not figs:
            blocks.append(Para("No finished runs."))
    return blocks, written



@report_section(40)
def curves(ctx: ReportContext) -> list[Block]:
    blocks, _ = plots_section(ctx.matrix, ctx.results, ctx.tracker, ctx.out_dir, ctx.metric)
    return blocks
