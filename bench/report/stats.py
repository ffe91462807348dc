"""Statistics of a report: mean ± sample std over seeds, paired differences with a t interval.

The t quantiles come from scipy.stats.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import scipy.stats


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t_critical: expected df >= 1, got {df}")
    return float(scipy.stats.t.ppf(0.975, df))


def t_interval(mean: float, std: float, n: int) -> tuple[float, float] | None:
    """mean ± t(0.975, n-1) · std / √n; None below two values."""
    if n < 2:
        return None
    half = t_critical(n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n - 1) and count of values over seeds."""

    mean: float
    std: float
    n: int

    @property
    def ci(self) -> tuple[float, float] | None:
        """95% t interval of the mean; None below two values."""
        return t_interval(self.mean, self.std, self.n)


def summarize(values: list[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(math.nan, math.nan, 0)
    return Summary(statistics.fmean(values), statistics.stdev(values) if n > 1 else 0.0, n)


@dataclass(frozen=True)
class Paired:
    """Difference a - b over the seeds both have: mean, sample std, n and its 95% t interval.

    mean ± t_{0.975, n-1} · s_d / √n, where s_d is the sample std of the per-seed differences.
    """

    mean: float
    std: float
    n: int
    seeds: tuple  # the units paired: seeds, or (teacher seed, student seed)

    @property
    def ci(self) -> tuple[float, float] | None:
        """95% t interval of the mean; None below two values."""
        return t_interval(self.mean, self.std, self.n)

    @property
    def clearly_positive(self) -> bool:
        """The lower bound of the 95% interval is above zero (needs two common seeds)."""
        ci = self.ci
        return ci is not None and ci[0] > 0


def _order(unit) -> tuple:
    if isinstance(unit, tuple):
        return (-1 if unit[0] is None else unit[0], unit[1])
    return (unit,)


def paired(a: dict, b: dict) -> Paired:
    """a - b seed by seed (same seed = same init and data order), over the common seeds. With
    several teacher seeds a unit is (teacher seed, student seed); a run without a teacher
    (teacher seed None) pairs with each teacher seed's run of its student seed."""
    units = sorted(set(a) | set(b), key=_order)
    pairs = []
    for unit in units:
        if unit in a and unit in b:
            pairs.append((unit, a[unit], b[unit]))
        elif isinstance(unit, tuple) and unit[0] is not None:
            free = (None, unit[1])
            if unit in b and free in a:
                pairs.append((unit, a[free], b[unit]))
            elif unit in a and free in b:
                pairs.append((unit, a[unit], b[free]))
    s = summarize([x - y for _, x, y in pairs])
    return Paired(s.mean, s.std, s.n, tuple(unit for unit, _, _ in pairs))


@dataclass(frozen=True)
class Lead:
    """The best method of a row and whether its lead over the runner-up is clear."""

    best: str
    runner_up: str | None
    difference: Paired | None

    @property
    def clear(self) -> bool:
        return self.difference is not None and self.difference.clearly_positive


def lead(values: dict[str, dict[int, float]]) -> Lead | None:
    """Best and runner-up by mean; clear when best - runner-up (paired) has CI lower bound > 0."""
    ranked = sorted(
        ((statistics.fmean(v.values()), label) for label, v in values.items() if v),
        key=lambda item: -item[0],
    )
    if not ranked:
        return None
    best = ranked[0][1]
    if len(ranked) == 1:
        return Lead(best, None, None)
    runner_up = ranked[1][1]
    if ranked[0][0] == ranked[1][0]:
        return Lead(best, runner_up, None)  # a tie is never a lead
    return Lead(best, runner_up, paired(values[best], values[runner_up]))


@dataclass(frozen=True)
class VarianceSplit:
    """Run-to-run variance of a cell split into a teacher part and a student part."""

    teacher: float  # σ²_teacher: how much the teacher's seed moves the student's top-1
    student: float  # σ²_student: the spread over student seeds under one teacher
    teachers: int
    students: int  # student seeds per teacher (the balanced part)


def variance_split(values: dict) -> VarianceSplit | None:
    """One-way random-effects ANOVA over teacher seeds (Searle, Casella & McCulloch, "Variance
    Components", 1992, §3.5), on the student seeds every teacher seed has:
    σ²_student = MS_within, σ²_teacher = max(0, (MS_between − MS_within) / n_students).
    `values`: (teacher seed, student seed) -> value. None below 2 × 2 units."""
    by_teacher: dict = {}
    for (teacher, student), value in values.items():
        if teacher is not None:
            by_teacher.setdefault(teacher, {})[student] = value
    common = set.intersection(*(set(v) for v in by_teacher.values())) if by_teacher else set()
    if len(by_teacher) < 2 or len(common) < 2:
        return None
    groups = [[seeds[s] for s in sorted(common)] for seeds in by_teacher.values()]
    n = len(common)
    within = statistics.fmean(statistics.variance(g) for g in groups)
    between = n * statistics.variance([statistics.fmean(g) for g in groups])
    return VarianceSplit(max(0.0, (between - within) / n), within, len(groups), n)


# ---------------------------------------------------------------- formatting


def fmt_summary(s: Summary) -> str:
    return "—" if s.n == 0 else f"{s.mean:.2f} ± {s.std:.2f} ({s.n})"


def fmt_signed(x: float) -> str:
    return f"{x:+.2f}"


def fmt_paired(p: Paired | None) -> str:
    """'+1.23 [+0.45, +2.01] (5)'; without an interval below two common seeds."""
    if p is None or p.n == 0:
        return "—"
    ci = p.ci
    if ci is None:
        return f"{fmt_signed(p.mean)} (1, no interval)"
    return f"{fmt_signed(p.mean)} [{fmt_signed(ci[0])}, {fmt_signed(ci[1])}] ({p.n})"


def welch_p(ours: Summary, their_mean: float, their_std: float, their_n: int) -> float | None:
    """Two-sided p of Welch's t test between our mean and a published mean of `their_n` runs
    with sample std `their_std`; None where either side has fewer than two runs."""
    if ours.n < 2 or their_n < 2:
        return None
    a, b = ours.std**2 / ours.n, their_std**2 / their_n
    if a + b == 0:
        return 1.0 if ours.mean == their_mean else 0.0
    t = (ours.mean - their_mean) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a**2 / (ours.n - 1) + b**2 / (their_n - 1))
    return float(2 * scipy.stats.t.sf(abs(t), df))
