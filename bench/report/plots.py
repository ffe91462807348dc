"""Report figures: test top-1 per epoch (mean over seeds, min-max band) and bars with error bars.

Figures are built with matplotlib's object API (no pyplot state, Agg canvas), returned to the
caller, and saved as PNG by `save`.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report.stats import Summary

History = list[tuple[int, float]]  # (epoch, value)


def method_colors(labels: list[str] | tuple[str, ...]) -> dict[str, tuple]:
    """One color per method label, the same in every figure of a report."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _new_figure(width: float = 6.4, height: float = 4.0, bottom: float = 0.12) -> Figure:
    # fixed margins: a layout engine would double the drawing time of every figure
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.15 / width, top=0.9, bottom=bottom)
    FigureCanvasAgg(fig)
    return fig


def curves_figure(
    title: str,
    series: dict[str, dict[int, History]],
    colors: dict[str, tuple] | None = None,
    ylabel: str = "test top-1 (%)",
) -> Figure:
    """One line per method: the mean over seeds at each epoch; the band spans min to max."""
    fig = _new_figure()
    ax = fig.add_subplot()
    colors = colors or method_colors(list(series))
    for label, by_seed in series.items():
        per_epoch: dict[int, list[float]] = {}
        for history in by_seed.values():
            for epoch, value in history:
                per_epoch.setdefault(epoch, []).append(value)
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        means = [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs]
        n = len(by_seed)
        ax.plot(epochs, means, color=colors.get(label), label=f"{label} (n={n})", linewidth=1.5)
        if n > 1:
            ax.fill_between(
                epochs,
                [min(per_epoch[e]) for e in epochs],
                [max(per_epoch[e]) for e in epochs],
                color=colors.get(label),
                alpha=0.2,
                linewidth=0,
            )
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize="small", loc="lower right")
    return fig


def bars_figure(
    title: str,
    stats: dict[str, Summary],
    colors: dict[str, tuple] | None = None,
    ylabel: str = "test top-1 (%)",
) -> Figure:
    """One bar per method with data: the mean over seeds, error bar ± sample std."""
    shown = {label: s for label, s in stats.items() if s.n > 0}
    rotate = len(shown) > 5
    fig = _new_figure(max(4.0, 1.0 + 0.6 * len(shown)), 4.0, bottom=0.3 if rotate else 0.15)
    ax = fig.add_subplot()
    colors = colors or method_colors(list(stats))
    labels = list(shown)
    means = [shown[label].mean for label in labels]
    stds = [shown[label].std for label in labels]
    ax.bar(
        range(len(labels)),
        means,
        yerr=stds,
        capsize=4,
        color=[colors.get(label) for label in labels],
        edgecolor="black",
        linewidth=0.5,
    )
    sep = " " if rotate else "\n"
    ax.set_xticks(range(len(labels)), [f"{lab}{sep}(n={shown[lab].n})" for lab in labels])
    ax.tick_params(axis="x", labelsize="small")
    if rotate:
        for text in ax.get_xticklabels():
            text.set(rotation=40, ha="right", rotation_mode="anchor")
    if labels:
        low = min(m - s for m, s in zip(means, stds, strict=True))
        high = max(m + s for m, s in zip(means, stds, strict=True))
        margin = max(0.5, 0.15 * (high - low))
        ax.set_ylim(max(0.0, math.floor(low - margin)), math.ceil(high + margin))
    ax.set_title(title, fontsize="medium")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
