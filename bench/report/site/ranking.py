"""What the index ranks: per method, its mean rank, aggregates with intervals, wins / ties /
losses against the baseline and its cost; the tests across blocks and what they can say."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from bench.report import across
from bench.report.site.board import Block, Board
from bench.report.stats import paired


@dataclass
class MethodRow:
    label: str
    mean_rank: float | None
    blocks: int
    vs_reference: across.Aggregate | None  # IQM of the improvement over ce
    vs_baseline: across.Aggregate | None
    wins: int = 0
    ties: int = 0
    losses: int = 0
    cost: float | None = None  # time per training image relative to the baseline
    per_dataset: dict[str, float] = field(default_factory=dict)  # mean improvement over ce
    is_reference: bool = False  # the method the aggregate is measured from (0 by definition)

    @property
    def score(self) -> float | None:
        """What the index ranks by: the IQM improvement over the reference (ce, else the
        baseline); the reference itself scores 0."""
        if self.is_reference:
            return 0.0
        aggregate = self.vs_reference if self.vs_reference is not None else self.vs_baseline
        return None if aggregate is None else aggregate.value


@dataclass
class Ranking:
    name: str  # the filter: "all", a dataset, or a pair family
    blocks: list[Block]
    rows: list[MethodRow]
    tested: list[str]  # the methods present in every block (the tests' pool)
    friedman: across.Friedman | None
    pairs: dict  # (a, b) -> Holm-adjusted Wilcoxon p
    improvement: dict  # (a, b) -> P(A > B)
    words: str
    baseline: str = ""


def _block_ranks(board: Board, blocks: list[Block]) -> dict[str, list[float]]:
    return across.ranks_per_block(across.block_means(board.runs(blocks)))


def _wins(board: Board, blocks: list[Block], label: str) -> tuple[int, int, int]:
    """Against the baseline, per block: a win or a loss where the paired 95% interval excludes
    0, else a tie (an interval that contains 0, or fewer than two common seeds)."""
    wins = ties = losses = 0
    for block in blocks:
        ours, base = block.runs.get(label), block.runs.get(board.baseline)
        if not ours or not base:
            continue
        ci = paired(ours, base).ci
        if ci is not None and ci[0] > 0:
            wins += 1
        elif ci is not None and ci[1] < 0:
            losses += 1
        else:
            ties += 1
    return wins, ties, losses


def cost(board: Board, blocks: list[Block], label: str) -> float | None:
    """The baseline's img/s over this method's, per block, geometric mean over blocks: from
    `bench perf --matrix` where it measured the block's pair, else from the runs' own img/s."""
    measured: dict = {}
    for costs in board.costs:
        measured |= costs.speeds
    ratios = []
    for b in blocks:
        timed = measured.get(f"{b.teacher}:{b.student}", {})
        base = board.baseline
        if timed.get(label) and timed.get(base):
            ratios.append(timed[base] / timed[label])
        elif not board.costs and b.speeds.get(label) and b.speeds.get(base):
            ratios.append(statistics.median(b.speeds[base]) / statistics.median(b.speeds[label]))
    return math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios else None


def rank(board: Board, blocks: list[Block], name: str) -> Ranking:
    runs = board.runs(blocks)
    labels = [lab for lab in board.labels if any(b.runs.get(lab) for b in blocks)]
    block_ranks = _block_ranks(board, blocks)
    rows = []
    for label in labels:
        ranks = block_ranks.get(label, [])
        row = MethodRow(
            label,
            statistics.fmean(ranks) if ranks else None,
            sum(1 for b in blocks if b.runs.get(label)),
            across.improvement_iqm(runs, label, board.reference)
            if board.reference and label != board.reference
            else None,
            across.improvement_iqm(runs, label, board.baseline)
            if label != board.baseline
            else None,
            *_wins(board, blocks, label),
            cost=cost(board, blocks, label),
            is_reference=label == (board.reference or board.baseline),
        )
        if board.reference:
            for dataset in dict.fromkeys(b.dataset for b in blocks):
                deltas = [
                    statistics.fmean(b.runs[label].values())
                    - statistics.fmean(b.runs[board.reference].values())
                    for b in blocks
                    if b.dataset == dataset and b.runs.get(label) and b.runs.get(board.reference)
                ]
                if deltas:
                    row.per_dataset[dataset] = statistics.fmean(deltas)
        rows.append(row)
    rows.sort(key=_order)
    means = across.block_means(runs)
    tested = [lab for lab in labels if all(lab in means[b.key] for b in blocks)]
    result = across.friedman(means, tested)
    pairs = across.wilcoxon_holm(means, tested)
    improvement = {
        (a, b): across.probability_of_improvement(runs, a, b)
        for a in labels
        for b in labels
        if a != b
    }
    return Ranking(
        name,
        blocks,
        rows,
        tested,
        result,
        pairs,
        improvement,
        verdict(len(blocks), tested, result, pairs), board.baseline,
    )


def _order(row: MethodRow) -> tuple:
    if row.score is None:
        return (1, row.mean_rank if row.mean_rank is not None else math.inf)
    return (0, -row.score)


def verdict(blocks: int, tested: list[str], result: across.Friedman | None, pairs: dict) -> str:
    """What the tests can say here, in words (an empty result is never shown bare)."""
    k = len(tested)
    if blocks < 2 or result is None:
        return (
            f"{blocks} block{'s' if blocks != 1 else ''} and {k} methods in every block: too "
            "few for any test across blocks. This leaderboard ranks nothing; its numbers "
            "describe these runs only."
        )
    comparisons = k * (k - 1) // 2
    floor = across.smallest_wilcoxon_p(blocks) * comparisons
    found = "the methods differ" if result.significant else "no difference found"
    text = (
        f"Friedman's test over {blocks} blocks and {k} methods: χ²_F = {result.statistic:.2f}, "
        f"p = {result.p:.3g} ({found}). Two mean ranks must differ by {result.cd:.2f} to be "
        "told apart (Nemenyi, α = 0.05)."
    )
    if floor >= across.ALPHA:
        text += (
            f" With {blocks} blocks the smallest p Wilcoxon's test can give is "
            f"{across.smallest_wilcoxon_p(blocks):.3g}, and Holm's correction over "
            f"{comparisons} comparisons puts it at {min(floor, 1):.3g}: no pair of methods "
            "can be told apart; more blocks are needed."
        )
    else:
        apart = sorted({tuple(sorted(p)) for p, v in pairs.items() if v < across.ALPHA})
        text += (
            " Pairs told apart by Wilcoxon's signed-rank test with Holm's correction: "
            + (", ".join(f"{a} vs {b}" for a, b in apart) if apart else "none")
            + "."
        )
    return text
