"""Statistics across blocks (a block: one dataset x teacher→student pair), shared by the report
and the leaderboard site.

- Friedman's test over complete blocks (scipy) and Nemenyi's critical difference of mean ranks
  (Demšar, JMLR 2006, §3.2.2; q from scipy's studentized range);
- pairwise Wilcoxon signed-rank tests over blocks with Holm's correction (scikit-posthocs), which
  Benavoli et al. (JMLR 2016) recommend over mean-rank post-hoc tests, whose outcome depends on
  which other methods are in the pool;
- the interquartile mean (IQM) of per-block improvements with a stratified bootstrap interval,
  seeds resampled within each block, and the probability of improvement P(A > B), the block
  average of the Mann-Whitney statistic (both as rliable defines them, Agarwal et al., NeurIPS
  2021; rliable itself does not import beside pandas 3 here, through its `arch` dependency).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

ALPHA = 0.05
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # the intervals are reproducible: the same store gives the same page

# block -> method -> the values of its runs (one per seed, or per teacher and student seed)
Runs = dict[str, dict[str, list[float]]]


def block_means(runs: Runs) -> dict[str, dict[str, float]]:
    return {
        b: {m: float(np.mean(v)) for m, v in methods.items() if v} for b, methods in runs.items()
    }


def complete_blocks(means: dict[str, dict[str, float]], methods: list[str]) -> list[str]:
    return [b for b, by in means.items() if all(m in by for m in methods)]


def mean_ranks(means: dict[str, dict[str, float]], methods: list[str]) -> dict[str, float]:
    """Mean rank over the complete blocks (1 = best; ties share the mean of their ranks)."""
    blocks = complete_blocks(means, methods)
    if not blocks:
        return {}
    table = np.array([[means[b][m] for m in methods] for b in blocks])
    ranks = scipy.stats.rankdata(-table, axis=1, method="average")
    return dict(zip(methods, ranks.mean(axis=0).tolist(), strict=True))


def ranks_per_block(means: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Within each block the methods it has ranked by mean (1 = best, ties share the mean of
    their ranks); method -> its ranks over the blocks of two methods or more."""
    ranks: dict[str, list[float]] = {}
    for by_method in means.values():
        if len(by_method) < 2:
            continue
        order = scipy.stats.rankdata([-v for v in by_method.values()], method="average")
        for label, rank in zip(by_method, order, strict=True):
            ranks.setdefault(label, []).append(float(rank))
    return ranks


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Critical difference of two mean ranks among k methods over n blocks (Demšar 2006, eq. 5):
    q_alpha · √(k(k+1) / 6n), q_alpha the studentized range quantile / √2."""
    q = scipy.stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


@dataclass(frozen=True)
class Friedman:
    statistic: float  # χ²_F
    p: float
    blocks: int
    methods: int
    iman_davenport: float  # F_F = (N-1) χ²_F / (N(k-1) - χ²_F) (Demšar eq. 4)
    cd: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def friedman(means: dict[str, dict[str, float]], methods: list[str]) -> Friedman | None:
    """Friedman's test over the blocks where every method ran, as Demšar (2006, eq. 3) writes it:
    χ²_F = 12N / (k(k+1)) · (Σ R_j² − k(k+1)² / 4) on the mean ranks R_j (no tie correction,
    which scipy's friedmanchisquare applies), p from χ² with k − 1 degrees of freedom. None below
    3 methods or 2 blocks."""
    ranks = mean_ranks(means, methods)
    k, n = len(methods), len(complete_blocks(means, methods))
    if k < 3 or n < 2:
        return None
    r = np.array([ranks[m] for m in methods])
    chi2 = float(12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4))
    denominator = n * (k - 1) - chi2
    iman = (n - 1) * chi2 / denominator if denominator > 0 else math.inf
    p = float(scipy.stats.chi2.sf(chi2, k - 1))
    return Friedman(chi2, p, n, k, iman, nemenyi_cd(k, n))


def wilcoxon_holm(means: dict[str, dict[str, float]], methods: list[str]) -> dict:
    """(a, b) -> Holm-adjusted two-sided p of Wilcoxon's signed-rank test over the blocks both
    ran (NaN where fewer than 2 blocks or no differences)."""
    import scikit_posthocs as sp

    blocks = complete_blocks(means, methods)
    if len(methods) < 2 or len(blocks) < 2:
        return {}
    groups = [np.array([means[b][m] for b in blocks]) for m in methods]
    raw = sp.posthoc_wilcoxon(groups, zero_method="zsplit").to_numpy()
    pairs = list(itertools.combinations(range(len(methods)), 2))
    adjusted = holm([float(raw[i, j]) for i, j in pairs])
    out = {}
    for (i, j), p in zip(pairs, adjusted, strict=True):
        out[(methods[i], methods[j])] = out[(methods[j], methods[i])] = p
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979): the i-th smallest p times (m − i + 1), kept
    monotone, capped at 1. (statsmodels' multipletests gives the same numbers but runs a full
    garbage collection on every call, 50× this whole test here.)"""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    adjusted, running = [math.nan] * m, 0.0
    for rank, i in enumerate(order):
        if math.isnan(p_values[i]):
            continue
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def smallest_wilcoxon_p(blocks: int) -> float:
    """The smallest two-sided p the exact signed-rank test can give over `blocks` blocks."""
    return 2.0 / 2**blocks


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (scipy's 25% trimmed mean)."""
    return scipy.stats.trim_mean(values, 0.25, axis=axis)


@dataclass(frozen=True)
class Aggregate:
    value: float
    low: float
    high: float
    blocks: int


def improvement_iqm(
    runs: Runs,
    method: str,
    reference: str,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Aggregate | None:
    """IQM over blocks of mean(method) − mean(reference), with a 95% stratified-bootstrap
    interval: each sample resamples the runs of both methods within every block."""
    blocks = [b for b, by in runs.items() if by.get(method) and by.get(reference)]
    if not blocks:
        return None
    rng = np.random.default_rng(seed)
    point = iqm(np.array([np.mean(runs[b][method]) - np.mean(runs[b][reference]) for b in blocks]))
    draws = np.empty((samples, len(blocks)))
    for j, b in enumerate(blocks):
        ours, theirs = np.asarray(runs[b][method]), np.asarray(runs[b][reference])
        pick_ours = rng.integers(0, len(ours), size=(samples, len(ours)))
        pick_theirs = rng.integers(0, len(theirs), size=(samples, len(theirs)))
        draws[:, j] = ours[pick_ours].mean(axis=1) - theirs[pick_theirs].mean(axis=1)
    low, high = np.percentile(iqm(draws, axis=1), [2.5, 97.5])
    return Aggregate(float(point), float(low), float(high), len(blocks))


def probability_of_improvement(runs: Runs, a: str, b: str) -> float | None:
    """P(A > B): over the blocks both ran, the mean of P(X_A > X_B) + ½ P(X_A = X_B) between
    their runs (the Mann-Whitney U statistic over n·m)."""
    blocks = [k for k, by in runs.items() if by.get(a) and by.get(b)]
    if not blocks:
        return None
    scores = []
    for k in blocks:
        x, y = runs[k][a], runs[k][b]
        scores.append(scipy.stats.mannwhitneyu(x, y).statistic / (len(x) * len(y)))
    return float(np.mean(scores))
