"""Runs -> report: protocol, leaderboard, Δ vs KD paired by seed, published numbers, ablation,
per-seed numbers, failed/blocked/missing cells, runs.csv and PNG plots.

Reads the tracker once for every run (one search), and once per plotted metric for histories
(one pass where the tracker offers a bulk read, else one call per finished run).
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.errors import SpecError
from bench.report_published import PublishedTable, load_published, not_compared_reason
from bench.report_render import (
    Block,
    Bullets,
    Heading,
    Image,
    Para,
    Table,
    bold,
    to_html,
    to_latex,
    to_markdown,
)
from bench.report_stats import (
    Lead,
    Summary,
    fmt_paired,
    fmt_signed,
    fmt_summary,
    lead,
    paired,
    summarize,
)
from bench.spec import (
    Matrix,
    RunSpec,
    TeacherSpec,
    apply_overrides,
    load_matrix,
    read_matrix_yaml,
)
from bench.tracking import FAILED, FINISHED, KILLED, RUNNING, RunRecord

METRICS = ("last", "best")
FORMATS = ("md", "html", "latex")
FINAL_METRICS = ("last_top1", "last_top5", "best_top1", "best_top5", "best_epoch", "teacher_top1")
RECORD_TAGS = (
    "failure_reason",
    "failure_epoch",
    "teacher_sha256",
    "subset",
    "device_name",
    "git_sha",
    "kdbench_version",
    "version.torch",
    "resume_count",
)
DONE, FAILED_STATE, BLOCKED, UNFINISHED, MISSING = (
    "finished",
    "failed",
    "blocked",
    "unfinished",
    "missing",
)
PLOT_METRIC = "test/top1"

# ---------------------------------------------------------------- collecting runs


@dataclass
class CellResult:
    """A cell of the matrix and the run that stands for it (finished preferred), with its state."""

    run: RunSpec
    record: RunRecord | None
    state: str = ""
    reason: str = ""
    epoch: str = ""
    attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.record is not None and self.record.status == FINISHED

    def value(self, metric: str) -> float | None:
        """The cell's final `metric` ('last' or 'best' top-1, or any final metric name)."""
        if not self.finished:
            return None
        key = f"{metric}_top1" if metric in METRICS else metric
        return self.record.metrics.get(key)


def _rank(record: RunRecord) -> int:
    """Which of several runs of one cell stands for it: finished, then unfinished, then failed."""
    if record.status == FINISHED and "last_top1" in record.metrics:
        return 0
    if record.status in (RUNNING, KILLED):
        return 1
    if record.status == FINISHED:
        return 2  # finished without final metrics: shown as unfinished
    return 3


def _pick(records: list[RunRecord]) -> RunRecord | None:
    return min(records, key=_rank) if records else None  # min is stable: the first of a rank


def _failure(record: RunRecord) -> tuple[str, str]:
    reason = record.tags.get("failure_reason", "") or f"status {record.status}"
    epoch = record.tags.get("failure_epoch", "")
    return reason, "" if epoch in ("", "None") else epoch


def _teacher_cell_key(run: RunSpec) -> str | None:
    """cell_key of the CE run that trains this run's teacher (None for file/pretrained ones)."""
    if run.teacher is None or run.teacher.checkpoint or run.teacher.pretrained:
        return None
    from bench.teachers import teacher_run

    return teacher_run(run.teacher, run).cell_key


def collect(matrix: Matrix, tracker, records: list[RunRecord] | None = None) -> list[CellResult]:
    """Every cell of the matrix with the run that stands for it and its state; runs are grouped
    by cell_key (the same cell run on another device or by another matrix counts)."""
    if records is None:
        records = tracker.search()
    by_cell: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        key = record.tags.get("cell_key")
        if key is not None:
            by_cell[key].append(record)
    teacher_keys: dict[TeacherSpec, str | None] = {}
    results = []
    for run in matrix.runs:
        attempts = by_cell.get(run.cell_key, [])
        record = _pick(attempts)
        result = CellResult(run, record, attempts=len(attempts))
        if record is not None and _rank(record) == 0:
            result.state = DONE
        elif record is not None and record.status == FAILED:
            result.state = FAILED_STATE
            result.reason, result.epoch = _failure(record)
        elif record is not None:
            result.state = UNFINISHED
            result.reason = (
                "finished without final metrics"
                if record.status == FINISHED
                else f"{record.status.lower()}: rerun the same command to resume"
            )
        else:
            result.state = MISSING
            result.reason = "not run"
            if run.teacher is not None:
                if run.teacher not in teacher_keys:
                    teacher_keys[run.teacher] = _teacher_cell_key(run)
                teacher = _pick(by_cell.get(teacher_keys[run.teacher] or "", []))
                if teacher is not None and teacher.status == FAILED:
                    reason, epoch = _failure(teacher)
                    result.state = BLOCKED
                    result.reason = f"teacher {run.teacher.arch} failed: {reason}"
                    result.epoch = epoch
                elif teacher is None and teacher_keys[run.teacher] is not None:
                    result.reason = f"not run (teacher {run.teacher.arch} not trained yet)"
        results.append(result)
    return results


# ---------------------------------------------------------------- views of the results


def pair_label(teacher: str, student: str) -> str:
    return f"{teacher}:{student}"


def pair_title(teacher: str, student: str) -> str:
    return f"{teacher} → {student}"


class Results:
    """The collected cells indexed by (pair, method label)."""

    def __init__(self, matrix: Matrix, cells: list[CellResult]):
        self.matrix = matrix
        self.cells = cells
        self._index: dict[tuple[str, str], list[CellResult]] = defaultdict(list)
        for cell in cells:
            for pair in cell.run.pairs:
                self._index[(pair, cell.run.method.label)].append(cell)

    def cells_of(self, pair: tuple[str, str], label: str) -> list[CellResult]:
        return self._index.get((pair_label(*pair), label), [])

    def values(self, pair: tuple[str, str], label: str, metric: str) -> dict[int, float]:
        """Seed -> final value of the finished runs of a (pair, method) cell."""
        out = {}
        for cell in self.cells_of(pair, label):
            value = cell.value(metric)
            if value is not None:
                out[cell.run.seed] = value
        return out

    def summary(self, pair: tuple[str, str], label: str, metric: str) -> Summary:
        return summarize(list(self.values(pair, label, metric).values()))

    def row_values(self, pair: tuple[str, str], metric: str) -> dict[str, dict[int, float]]:
        return {label: self.values(pair, label, metric) for label in self.matrix.method_labels}

    def method_name(self, label: str) -> str:
        return next(c.run.method.name for c in self.cells if c.run.method.label == label)

    def teacher_score(self, pair: tuple[str, str]) -> str | None:
        """The teacher's test top-1 as re-scored at load, logged with each of its students."""
        scores = set()
        for label in self.matrix.method_labels:
            for cell in self.cells_of(pair, label):
                if cell.record is not None and cell.run.teacher is not None:
                    score = cell.record.metrics.get("teacher_top1")
                    if score is not None:
                        scores.add(f"{score:.2f}")
        return "/".join(sorted(scores)) if scores else None

    @property
    def finished_records(self) -> list[RunRecord]:
        return [c.record for c in self.cells if c.state == DONE]


def _other(metric: str) -> str:
    return "best" if metric == "last" else "last"


# ---------------------------------------------------------------- sections


def _distinct(values: list[str]) -> str:
    counts = Counter(v for v in values if v)
    if not counts:
        return "not recorded"
    if len(counts) == 1:
        return f"`{next(iter(counts))}`"
    return ", ".join(f"`{v}` ({n} runs)" for v, n in counts.most_common())


def _recipe_text(recipe) -> str:
    return (
        f"{recipe.epochs} epochs, batch {recipe.batch_size}, SGD lr {recipe.lr:g} momentum "
        f"{recipe.momentum:g}{' (Nesterov)' if recipe.nesterov else ''}, weight decay "
        f"{recipe.weight_decay:g}, lr × {recipe.lr_decay:g} after epochs "
        f"{', '.join(str(m) for m in recipe.milestones) or '(none)'}"
    )


def _dataset_text(matrix: Matrix) -> str:
    data = matrix.data
    text = f"`{data.dataset}`"
    if data.dataset == "synthetic":
        text += f" (generated, CIFAR-100 format, {data.synthetic or 'defaults'})"
    if data.is_subset:
        text += (
            f", **subset**: {data.subset_per_class or 'all'} train / "
            f"{data.test_subset_per_class or 'all'} test images per class"
        )
    else:
        text += ", full train and test sets"
    hashes = sorted({r.data_hash for r in matrix.runs})
    text += f"; content hash `{', '.join(hashes)}`; augmentation {'on' if data.augment else 'off'}"
    return text


def _teacher_text(matrix: Matrix, results: Results) -> str:
    parts = []
    for teacher in matrix.teachers:
        if teacher.checkpoint:
            how = f"loaded from `{teacher.checkpoint}` (sha256 {teacher.checkpoint_sha256[:12]})"
        elif teacher.pretrained:
            how = f"pretrained weights {teacher.pretrained}"
        else:
            how = f"trained with CE ({teacher.recipe.epochs} epochs, seed {teacher.seed})"
        scores = sorted(
            {
                s
                for t, st in matrix.pairs
                if t == teacher.arch
                for s in [results.teacher_score((t, st))]
                if s
            }
        )
        score = f", re-scored test top-1 {'/'.join(scores)}" if scores else ""
        failed = any(c.state == BLOCKED for c in results.cells if c.run.teacher == teacher)
        parts.append(f"{teacher.arch}: {how}{score}{' — **failed**' if failed else ''}")
    return "; ".join(parts) or "none"


def _pair_recipes(matrix: Matrix) -> list[str]:
    notes = []
    base = dataclasses.asdict(matrix.recipe)
    for teacher, student in matrix.pairs:
        label = pair_label(teacher, student)
        recipe = next((r.recipe for r in matrix.runs if label in r.pairs), matrix.recipe)
        diff = {k: v for k, v in dataclasses.asdict(recipe).items() if base[k] != v}
        if diff:
            changes = ", ".join(f"{k} {v}" for k, v in diff.items())
            notes.append(f"{pair_title(teacher, student)}: {changes}")
    return notes


def _method_table(matrix: Matrix) -> Table:
    rows = []
    for label in matrix.method_labels:
        runs = [r for r in matrix.runs if r.method.label == label]
        keys = sorted({k for r in runs for k in r.method.params})
        parts = []
        for key in keys:
            values = sorted({str(r.method.params.get(key)) for r in runs})
            parts.append(
                f"{key}={values[0]}"
                if len(values) == 1
                else f"{key}=per pair ({', '.join(values)})"
            )
        rows.append([label, runs[0].method.name, ", ".join(parts) or "—"])
    return Table(["method", "loss", "parameters"], rows, name="methods")


def protocol_section(
    matrix: Matrix, results: Results, metric: str, tracker_description: str
) -> list[Block]:
    done = results.finished_records
    params = [r.params for r in done]
    tags = [r.tags for r in done]
    counts = Counter(c.state for c in results.cells)
    state_text = ", ".join(
        f"{counts[s]} {s}" for s in (DONE, FAILED_STATE, BLOCKED, UNFINISHED, MISSING) if counts[s]
    )
    other = _other(metric)
    items = [
        f"Matrix `{matrix.name}` from `{matrix.source}`: {len(matrix.pairs)} pairs × "
        f"{len(matrix.method_labels)} methods × {len(matrix.seeds)} seeds = "
        f"{len(matrix.runs)} cells ({state_text}).",
        f"Dataset: {_dataset_text(matrix)}.",
        f"Student recipe: {_recipe_text(matrix.recipe)}.",
    ]
    overrides = _pair_recipes(matrix)
    if overrides:
        items.append("Per-pair recipe: " + "; ".join(overrides) + ".")
    items += [
        f"Teachers: {_teacher_text(matrix, results)}.",
        f"Seeds: {', '.join(str(s) for s in matrix.seeds)} (a seed fixes the student's "
        "initialisation and the data order, the same for every method).",
        f"Primary number: the **{metric}-epoch** test top-1 (%), mean ± sample std over seeds "
        f"(n = finished seeds); the {other}-epoch mean is reported beside it. mdistiller keeps "
        "the best test top-1 over all epochs, CRD reports the last epoch: the two are never "
        "mixed here.",
        "Data backend "
        + _distinct([p.get("backend", "") for p in params])
        + ", device "
        + _distinct([p.get("device", "") for p in params])
        + " ("
        + _distinct([t.get("device_name", "") for t in tags])
        + "), precision "
        + _distinct([p.get("precision", "") for p in params])
        + ".",
        "kdbench "
        + _distinct([t.get("kdbench_version", "") for t in tags])
        + ", git SHA "
        + _distinct([t.get("git_sha", "") for t in tags])
        + ", torch "
        + _distinct([t.get("version.torch", "") for t in tags])
        + ", mlflow "
        + _distinct([t.get("version.mlflow", "") for t in tags])
        + ".",
        f"Runs read from `{tracker_description}`.",
    ]
    return [Heading("Protocol"), Bullets(items), _method_table(matrix)]


def leaderboard(matrix: Matrix, results: list[CellResult] | Results, metric: str) -> list[list]:
    """Rows: teacher (re-scored top-1), student, then mean ± std (n) per method label; the best
    cell is wrapped in ⟦ ⟧ where its lead over the runner-up is clear (see `lead`)."""
    if not isinstance(results, Results):
        results = Results(matrix, results)
    rows = []
    for pair in matrix.pairs:
        teacher, student = pair
        score = results.teacher_score(pair)
        row = [f"{teacher} ({score})" if score else teacher, student]
        values = results.row_values(pair, metric)
        top = lead(values)
        for label in matrix.method_labels:
            text = fmt_summary(summarize(list(values[label].values())))
            row.append(bold(text) if top is not None and top.clear and label == top.best else text)
        rows.append(row)
    return rows


def leaderboard_section(matrix: Matrix, results: Results, metric: str) -> list[Block]:
    headers = ["teacher (top-1)", "student"] + list(matrix.method_labels)
    other = _other(metric)
    note = (
        "Cells: mean ± sample std (n finished seeds) of the {m}-epoch test top-1 (%); the "
        "teacher's re-scored test top-1 is beside its name. **Bold**: the best method of the row, "
        "only where its lead over the runner-up is clear: the paired difference best − runner-up "
        "over their common seeds has a 95% interval whose lower bound is above 0 (see the leads "
        "table below). '—': no finished run."
    )
    return [
        Heading(f"Leaderboard: {metric}-epoch test top-1 (%)"),
        Para(note.format(m=metric)),
        Table(headers, leaderboard(matrix, results, metric), name=f"leaderboard_{metric}",
              caption=f"{matrix.name}: {metric}-epoch test top-1 (%), mean ± std (n)"),
        Heading(f"{other.capitalize()}-epoch test top-1 (%)", 3),
        Table(headers, leaderboard(matrix, results, other), name=f"leaderboard_{other}",
              caption=f"{matrix.name}: {other}-epoch test top-1 (%), mean ± std (n)"),
    ]  # fmt: skip


def _lead_row(pair, metric: str, top: Lead | None) -> list[str]:
    if top is None:
        return [*pair, metric, "—", "—", "—", "no finished runs"]
    if top.runner_up is None:
        return [*pair, metric, top.best, "—", "—", "only one method has runs"]
    if top.difference is None:
        return [*pair, metric, top.best, top.runner_up, "tie", "no: tie"]
    if top.difference.n < 2:
        verdict = "no: under two common seeds"
    else:
        verdict = "yes" if top.clear else "no: interval includes 0"
    return [*pair, metric, top.best, top.runner_up, fmt_paired(top.difference), verdict]


def delta_section(matrix: Matrix, results: Results, metric: str) -> list[Block]:
    blocks: list[Block] = [Heading("Δ vs KD, paired by seed")]
    formula = (
        "For each seed both methods ran, d = top-1(method) − top-1(kd) (same seed = same "
        "initialisation and data order). Cell: mean d [95% interval] (n common seeds), the "
        "interval mean ± t(0.975, n−1) · s_d / √n with s_d the sample std of d and t Student's "
        "critical value (tabulated for df 1..30, Cornish-Fisher beyond)."
    )
    others = [label for label in matrix.method_labels if label != "kd"]
    if "kd" not in matrix.method_labels:
        blocks.append(Para("This matrix has no `kd` cell: no Δ vs KD."))
    else:
        blocks.append(Para(formula))
        for m in (metric, _other(metric)):
            rows = []
            for pair in matrix.pairs:
                kd = results.values(pair, "kd", m)
                rows.append(
                    [*pair]
                    + [fmt_paired(paired(results.values(pair, lab, m), kd)) for lab in others]
                )
            blocks += [
                Heading(f"Δ vs KD, {m}-epoch top-1 (points)", 3),
                Table(["teacher", "student"] + [f"{lab} − kd" for lab in others], rows,
                      name=f"delta_kd_{m}", caption=f"{matrix.name}: Δ vs KD, {m}-epoch"),
            ]  # fmt: skip
    rows = []
    for m in (metric, _other(metric)):
        for pair in matrix.pairs:
            rows.append(_lead_row(pair, m, lead(results.row_values(pair, m))))
    blocks += [
        Heading("Leads: best vs runner-up", 3),
        Para(
            "Best and runner-up by mean; their paired difference over common seeds with its 95% "
            "interval; the best is marked only where the interval's lower bound is above 0."
        ),
        Table(["teacher", "student", "epoch", "best", "runner-up", "best − runner-up", "clear"],
              rows, name="leads"),
    ]  # fmt: skip
    return blocks


def published_section(matrix: Matrix, results: Results, published: PublishedTable) -> list[Block]:
    blocks: list[Block] = [Heading("Published numbers")]
    reason = not_compared_reason(matrix.data)
    if reason:
        return blocks + [Para(f"Not compared: {reason}.")]
    blocks.append(
        Para(
            "Published top-1 (bench/references/published.csv) beside ours, like for like: a "
            "published **best**-epoch number is diffed against our best-epoch mean, a **last**-"
            "epoch number against our last-epoch mean. Numbers whose epoch is unknown, and those "
            "the CSV marks not comparable, are shown and not diffed. Teacher rows compare the "
            "published teacher with ours as re-scored at load (one evaluation of fixed weights, "
            "so a published last-epoch or pretrained-weights number is the same quantity). "
            "'in CI': whether the published number lies in the 95% t interval of our mean."
        )
    )
    dataset = matrix.data.dataset
    rows = []
    for pair in matrix.pairs:
        teacher, student = pair
        pub = published.find(dataset, teacher, student, "teacher")
        score = results.teacher_score(pair)
        ours = f"{score} (re-scored)" if score else "—"
        if pub is None:
            delta = "not published"
        elif pub.comparable != "yes" or pub.metric == "unknown":
            delta = pub.why_not
        elif score is None or "/" in score:
            delta = "no re-scored teacher" if score is None else "several teacher scores"
        else:
            delta = fmt_signed(float(score) - pub.top1)
        rows.append(_published_row(pair, "teacher", ours, "", pub, delta, ""))
        for label in matrix.method_labels:
            name = results.method_name(label)
            if label != name:
                continue  # variants (ablation cells) have no published counterpart
            last = results.summary(pair, label, "last")
            best = results.summary(pair, label, "best")
            pub = published.find(dataset, teacher, student, name)
            inside = ""
            if pub is None:
                delta = "not published"
            elif not pub.diffable:
                delta = pub.why_not
            else:
                ours_s = last if pub.metric == "last" else best
                if ours_s.n == 0:
                    delta = "no finished runs"
                else:
                    delta = f"{fmt_signed(ours_s.mean - pub.top1)} (ours {pub.metric} − published)"
                    ci = ours_s.ci
                    inside = "—" if ci is None else ("yes" if ci[0] <= pub.top1 <= ci[1] else "no")
            rows.append(
                _published_row(
                    pair, label, fmt_summary(last), fmt_summary(best), pub, delta, inside
                )
            )
    headers = ["teacher", "student", "method", "ours last", "ours best", "published",
               "epoch (runs)", "Δ like for like", "in CI", "source"]  # fmt: skip
    blocks.append(Table(headers, rows, name="published", caption=f"{matrix.name}: published"))
    ours = {results.method_name(label) for label in matrix.method_labels} | {"teacher"}
    context = []
    for teacher, student in matrix.pairs:
        others = [p for p in published.for_pair(dataset, teacher, student) if p.method not in ours]
        if others:
            context.append([teacher, student, "; ".join(_published_brief(p) for p in others)])
    if context:
        blocks += [
            Para("Published methods this matrix does not run, for context (never diffed):"),
            Table(
                ["teacher", "student", "published (epoch, runs)"], context, name="published_other"
            ),
        ]
    return blocks


def _published_brief(pub) -> str:
    runs = f", {pub.runs} run{'' if pub.runs == '1' else 's'}" if pub.runs else ""
    note = "" if pub.comparable == "yes" else f"; {pub.why_not}"
    return f"{pub.method} {pub.top1:.2f} ({pub.metric}{runs}{note})"


def _published_row(pair, method, ours_last, ours_best, pub, delta, inside) -> list[str]:
    if pub is None:
        return [*pair, method, ours_last, ours_best, "—", "—", delta, inside, ""]
    runs = f" ({pub.runs})" if pub.runs else ""
    return [
        *pair,
        method,
        ours_last,
        ours_best,
        f"{pub.top1:.2f}",
        f"{pub.metric}{runs}",
        delta,
        inside,
        pub.source,
    ]


def _cakd_defaults() -> dict:
    import methods

    return methods.resolve_params("cakd")


def full_cakd_label(results: Results, pair: tuple[str, str], labels: list[str]) -> str | None:
    """The full cakd cell of a pair: label 'cakd' if present, else the cakd cell whose parameters
    differ least from cakd's defaults (the pair's w_wcd aside)."""
    if "cakd" in labels:
        return "cakd"
    defaults = _cakd_defaults()

    def distance(label: str) -> int:
        cells = results.cells_of(pair, label)
        params = cells[0].run.method.params if cells else {}
        return sum(params.get(k) != v for k, v in defaults.items() if k != "w_wcd")

    return min(labels, key=distance) if labels else None


def _variant_text(params: dict, full: dict) -> str:
    terms = "+".join(t for t in ("bcd", "scd", "wcd") if params.get(t)) or "none"
    diffs = [
        f"{k}={params[k]}"
        for k in sorted(params)
        if k not in ("bcd", "scd", "wcd") and params.get(k) != full.get(k)
    ]
    return terms + (f"; {', '.join(diffs)}" if diffs else "")


def ablation_section(matrix: Matrix, results: Results, metric: str) -> list[Block]:
    cakd_labels = [lab for lab in matrix.method_labels if results.method_name(lab) == "cakd"]
    if not any(lab != "cakd" for lab in cakd_labels):
        return []
    blocks: list[Block] = [
        Heading(f"CAKD ablation: BCD / SCD / WCD ({metric}-epoch top-1)"),
        Para(
            "Each cakd variant of a pair: its mean ± std (n), and its paired Δ [95% interval] "
            "(n common seeds) against the full cakd cell (all three terms, default k) and "
            "against kd. 'terms': the decoupled terms switched on; then what differs from the "
            "full cell."
        ),
    ]
    rows = []
    for pair in matrix.pairs:
        full = full_cakd_label(results, pair, cakd_labels)
        full_values = results.values(pair, full, metric) if full else {}
        full_params = (results.cells_of(pair, full) or [None])[0]
        full_params = full_params.run.method.params if full_params else {}
        kd = results.values(pair, "kd", metric) if "kd" in matrix.method_labels else None
        for label in sorted(cakd_labels, key=lambda lab: lab != full):
            cells = results.cells_of(pair, label)
            params = cells[0].run.method.params if cells else {}
            values = results.values(pair, label, metric)
            rows.append(
                [
                    *pair,
                    label + (" (full)" if label == full else ""),
                    _variant_text(params, full_params),
                    fmt_summary(summarize(list(values.values()))),
                    "—" if label == full else fmt_paired(paired(values, full_values)),
                    "no kd cell" if kd is None else fmt_paired(paired(values, kd)),
                ]
            )
    headers = ["teacher", "student", "variant", "terms", "mean ± std (n)", "Δ vs full cakd",
               "Δ vs kd"]  # fmt: skip
    blocks.append(Table(headers, rows, name="ablation", caption=f"{matrix.name}: cakd ablation"))
    return blocks


def _seed_cell(cell: CellResult | None) -> str:
    if cell is None:
        return "—"
    if cell.state == DONE:
        return f"{cell.value('last'):.2f} / {cell.value('best'):.2f}"
    if cell.state == FAILED_STATE:
        return "FAILED" + (f" (epoch {cell.epoch})" if cell.epoch else "")
    return cell.state


def per_seed_section(matrix: Matrix, results: Results) -> list[Block]:
    rows = []
    for pair in matrix.pairs:
        for label in matrix.method_labels:
            by_seed = {c.run.seed: c for c in results.cells_of(pair, label)}
            rows.append([*pair, label] + [_seed_cell(by_seed.get(s)) for s in matrix.seeds])
    headers = ["teacher", "student", "method"] + [f"seed {s}" for s in matrix.seeds]
    return [
        Heading("Per seed"),
        Para("Each run's last-epoch / best-epoch test top-1 (%), or why it has none."),
        Table(headers, rows, name="per_seed"),
    ]


def incomplete_section(results: Results) -> list[Block]:
    blocks: list[Block] = [Heading("Failed, blocked and missing cells")]
    bad = [c for c in results.cells if c.state != DONE]
    if not bad:
        return blocks + [Para("None: every cell of the matrix has a finished run.")]
    blocks.append(
        Para(
            f"{len(bad)} of {len(results.cells)} cells have no finished run; they are left out of "
            "the means above (n counts the seeds that remain). failed: the run raised or diverged "
            "(reason and epoch as recorded); blocked: its teacher failed, so it never started; "
            "unfinished: interrupted or still running (resumable); missing: never run."
        )
    )
    rows = [
        [
            c.run.name,
            ", ".join(c.run.pairs),
            c.state,
            c.reason,
            c.epoch or "—",
            c.record.run_id if c.record else "—",
            str(c.attempts),
        ]
        for c in sorted(bad, key=lambda c: (c.state, c.run.name))
    ]
    headers = ["cell", "pairs", "state", "reason", "epoch", "run id", "attempts"]
    blocks.append(Table(headers, rows, name="incomplete"))
    return blocks


# ---------------------------------------------------------------- histories and plots


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
    from bench import report_plots

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
    from bench import report_plots

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
            path = report_plots.save(fig, out_dir / "plots" / f"{kind}_{slug}.png")
            written.append(path)
            blocks.append(Image(f"plots/{path.name}", f"{title}: {alts[kind]}"))
        if not figs:
            blocks.append(Para("No finished runs."))
    return blocks, written


# ---------------------------------------------------------------- runs.csv


def write_runs_csv(results: list[CellResult], path: Path) -> None:
    """One line per cell of the matrix: its run's parameters, final metrics and tags."""
    fixed = ["cell_key", "run_key", "run_id", "name", "status", "state", "reason", "attempts",
             "pairs"]  # fmt: skip
    params: list[dict] = []
    for r in results:
        merged = {k: str(v) for k, v in r.run.flat_params().items()}
        if r.record is not None:
            merged.update(r.record.params)
        params.append(merged)
    param_keys = sorted({k for p in params for k in p} - set(fixed) - set(FINAL_METRICS))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fixed + param_keys + list(FINAL_METRICS) + list(RECORD_TAGS))
        for r, p in zip(results, params, strict=True):
            metrics = r.record.metrics if r.record else {}
            tags = r.record.tags if r.record else {}
            writer.writerow(
                [
                    r.run.cell_key,
                    tags.get("run_key", r.run.run_key),
                    r.record.run_id if r.record else "",
                    r.run.name,
                    r.record.status if r.record else "MISSING",
                    r.state,
                    r.reason,
                    r.attempts,
                    ";".join(r.run.pairs),
                ]
                + [p.get(k, "") for k in param_keys]
                + [metrics.get(k, "") for k in FINAL_METRICS]
                + [tags.get(k, "") for k in RECORD_TAGS]
            )


# ---------------------------------------------------------------- the report


def build_blocks(
    matrix: Matrix,
    results: Results,
    metric: str,
    published: PublishedTable,
    tracker_description: str,
    plot_blocks: list[Block],
) -> list[Block]:
    blocks: list[Block] = [Heading(f"kdbench report: {matrix.name}", 1)]
    if matrix.description.strip():
        blocks.append(Para(matrix.description.strip()))
    return (
        blocks
        + protocol_section(matrix, results, metric, tracker_description)
        + leaderboard_section(matrix, results, metric)
        + delta_section(matrix, results, metric)
        + plot_blocks
        + published_section(matrix, results, published)
        + ablation_section(matrix, results, metric)
        + per_seed_section(matrix, results)
        + incomplete_section(results)
    )


def write_report(
    matrix: Matrix,
    tracker,
    out_dir: Path,
    metric: str = "last",
    fmt: str = "md",
    records: list[RunRecord] | None = None,
) -> Path:
    """Write README.md, runs.csv and plots/ (plus README.html or tables.tex) into out_dir.

    `records`: the store's runs when the caller has already read them (one read, not two)."""
    if metric not in METRICS:
        raise SpecError(f"--metric '{metric}': expected last or best")
    if fmt not in FORMATS:
        raise SpecError(f"--format '{fmt}': expected {', '.join(FORMATS)}")
    if records is None:
        records = tracker.search()
    if not records:
        raise SpecError(_empty_store(tracker.describe(), matrix.name))
    results = Results(matrix, collect(matrix, tracker, records))
    if not any(c.state == DONE for c in results.cells):
        raise SpecError(
            f"no finished runs of matrix '{matrix.name}' in {tracker.describe()}; "
            f"run `python -m bench run --matrix {matrix.name}` first"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_blocks, _ = plots_section(matrix, results, tracker, out_dir, metric)
    blocks = build_blocks(
        matrix, results, metric, PublishedTable(load_published()), tracker.describe(), plot_blocks
    )
    files = ["runs.csv: one line per cell with every parameter, final metric and status"]
    if fmt == "html":
        files.append("README.html: this report as HTML")
    if fmt == "latex":
        files.append("tables.tex: the tables as LaTeX (booktabs)")
    blocks += [Heading("Files"), Bullets(files)]
    readme = out_dir / "README.md"
    readme.write_text(to_markdown(blocks))
    write_runs_csv(results.cells, out_dir / "runs.csv")
    if fmt == "html":
        (out_dir / "README.html").write_text(to_html(blocks, f"kdbench report: {matrix.name}"))
    if fmt == "latex":
        tables = [b for b in blocks if isinstance(b, Table)]
        (out_dir / "tables.tex").write_text("\n".join(to_latex(t) for t in tables))
    return readme


def _empty_store(store: str, name: str) -> str:
    return f"no runs in {store}: nothing to report; run `python -m bench run --matrix {name}` first"


def report_files(out_dir: Path, fmt: str) -> list[Path]:
    """What write_report writes besides the plots."""
    extra = {"md": [], "html": ["README.html"], "latex": ["tables.tex"]}[fmt]
    return [Path(out_dir) / name for name in ["README.md", "runs.csv", *extra]]


def load_report_matrix(
    name_or_path: str,
    records: list[RunRecord],
    *,
    store: str,
    overrides: list[str] | None = None,
    seeds: int | None = None,
    subset_per_class: int | None = None,
    workdir: Path | None = None,
) -> Matrix:
    """The matrix to report, built with the data content hash its runs were logged with, so a
    report never reads (or downloads) data: the hash of the matrix's own runs, else any hash in
    the store; where several, the one whose cells the store holds most of."""
    raw, _ = read_matrix_yaml(name_or_path)
    name = str(apply_overrides(raw, list(overrides or [])).get("name"))
    if not records:
        raise SpecError(_empty_store(store, name))
    tagged = {r.params.get("data_hash") for r in records if r.tags.get("matrix") == name}
    candidates = sorted((tagged or {r.params.get("data_hash") for r in records}) - {None})
    if not candidates:
        raise SpecError(f"no runs of matrix '{name}' in {store}: nothing to report")
    cell_keys = {r.tags.get("cell_key") for r in records}

    def build(data_hash: str) -> Matrix:
        return load_matrix(
            name_or_path,
            overrides=overrides,
            seeds=seeds,
            subset_per_class=subset_per_class,
            workdir=workdir,
            data_hash=data_hash,
        )

    matrices = [build(h) for h in candidates]
    return max(matrices, key=lambda m: sum(run.cell_key in cell_keys for run in m.runs))
