"""Runs -> comparison report: leaderboard (mean ± std over seeds), per-run CSV."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.errors import SpecError
from bench.spec import Matrix, RunSpec
from bench.tracking import FINISHED, RunRecord


@dataclass
class CellResult:
    run: RunSpec
    record: RunRecord | None

    @property
    def finished(self) -> bool:
        return self.record is not None and self.record.status == FINISHED


def collect(matrix: Matrix, tracker) -> list[CellResult]:
    """Every cell of the matrix with its finished run, if any (grouped by cell_key)."""
    by_cell: dict[str, RunRecord] = {}
    for record in tracker.search():
        key = record.tags.get("cell_key")
        if key is None:
            continue
        if key not in by_cell or (record.status == FINISHED and by_cell[key].status != FINISHED):
            by_cell[key] = record
    return [CellResult(run, by_cell.get(run.cell_key)) for run in matrix.runs]


def mean_std(values: list[float]) -> tuple[float, float, int]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    return statistics.fmean(values), statistics.stdev(values) if n > 1 else 0.0, n


def format_cell(values: list[float]) -> str:
    mean, std, n = mean_std(values)
    return "—" if n == 0 else f"{mean:.2f} ± {std:.2f} ({n})"


def teacher_scores(results: list[CellResult]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for result in results:
        if result.finished and result.run.teacher and "teacher_top1" in result.record.metrics:
            scores[result.run.teacher.arch] = result.record.metrics["teacher_top1"]
    return scores


def leaderboard(matrix: Matrix, results: list[CellResult], metric: str) -> list[list[str]]:
    scores = teacher_scores(results)
    rows = []
    for teacher, student in matrix.pairs:
        pair = f"{teacher}:{student}"
        score = scores.get(teacher)
        row = [f"{teacher} ({score:.2f})" if score is not None else teacher, student]
        for label in matrix.method_labels:
            values = [
                r.record.metrics[f"{metric}_top1"]
                for r in results
                if r.finished and pair in r.run.pairs and r.run.method.label == label
            ]
            row.append(format_cell(values))
        rows.append(row)
    return rows


def write_runs_csv(results: list[CellResult], path: Path) -> None:
    param_keys = sorted({k for r in results for k in r.run.flat_params()})
    metric_keys = ["last_top1", "last_top5", "best_top1", "best_top5", "best_epoch", "teacher_top1"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell_key", "run_id", "status", "pairs"] + param_keys + metric_keys)
        for r in results:
            params = r.run.flat_params()
            metrics = r.record.metrics if r.record else {}
            writer.writerow(
                [
                    r.run.cell_key,
                    r.record.run_id if r.record else "",
                    r.record.status if r.record else "MISSING",
                    ";".join(r.run.pairs),
                ]
                + [params.get(k, "") for k in param_keys]
                + [metrics.get(k, "") for k in metric_keys]
            )


def write_report(matrix: Matrix, tracker, out_dir: Path, metric: str = "last") -> Path:
    if metric not in ("last", "best"):
        raise SpecError(f"--metric '{metric}': expected last or best")
    results = collect(matrix, tracker)
    if not any(r.finished for r in results):
        raise SpecError(
            f"no finished runs of matrix '{matrix.name}' in {tracker.describe()}; "
            f"run `python -m bench run --matrix {matrix.name}` first"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    headers = ["teacher (top-1)", "student"] + list(matrix.method_labels)
    table = tabulate(leaderboard(matrix, results, metric), headers=headers, tablefmt="github")
    other = "best" if metric == "last" else "last"
    table_other = tabulate(leaderboard(matrix, results, other), headers=headers, tablefmt="github")
    missing = [r.run.name for r in results if not r.finished]
    lines = [
        f"# kdbench report: {matrix.name}",
        "",
        matrix.description.strip(),
        "",
        f"Cells: mean ± sample std (n seeds) of {metric}-epoch test top-1 (%). "
        f"Dataset {matrix.data.dataset}, backend {matrix.data.backend}, "
        f"{matrix.recipe.epochs} epochs, seeds {list(matrix.seeds)}.",
        "",
        table,
        "",
        f"## {other.capitalize()}-epoch top-1",
        "",
        table_other,
        "",
    ]
    if missing:
        lines += ["## Missing or failed cells", ""] + [f"- {name}" for name in missing] + [""]
    readme = out_dir / "README.md"
    readme.write_text("\n".join(lines))
    write_runs_csv(results, out_dir / "runs.csv")
    return readme
