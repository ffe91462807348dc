"""Writing a report: README.md (sections in order), runs.csv, plots; html or LaTeX on request."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from bench.errors import SpecError
from bench.files import atomic_write, atomic_write_text
from bench.references import PublishedTable, load_published
from bench.report.collect import CellResult, Results, collect
from bench.report.render import Block, Bullets, Heading, Para, Table, to_html, to_latex, to_markdown
from bench.report.sections import ReportContext, sections
from bench.spec import Matrix, apply_overrides, load_matrix, read_matrix_yaml
from bench.store.cell_state import MISSING
from bench.store.schema import (
    EXECUTION_TAGS,
    FINAL_METRICS,
    describe_numerics,
    numerics_of_record,
    numerics_of_run,
)
from bench.store.trackers import RunRecord
from bench.vocabulary import METRICS

FORMATS = ("md", "html", "latex")
RECORD_TAGS = (
    "failure_reason",
    "failure_epoch",
    "teacher_sha256",
    "subset",
    "device_name",
    "host",
    "git_sha",
    "kdbench_version",
    "version.torch",
    "version.cuda",
    "version.cudnn",
    "device_type",
    *EXECUTION_TAGS,
    "resume_count",
)


def write_runs_csv(results: list[CellResult], path: Path) -> None:
    """One line per cell of the matrix: its run's parameters, final metrics and tags."""
    fixed = ["cell_key", "run_key", "run_id", "name", "status", "state", "reason", "attempts",
             "pairs"]
    params: list[dict] = []
    for r in results:
        merged = {k: str(v) for k, v in r.run.flat_params().items()}
        if r.record is not None:
            merged.update(r.record.params)
        params.append(merged)
    param_keys = sorted({k for p in params for k in p} - set(fixed) - set(FINAL_METRICS))
    with atomic_write(path, "w") as f:
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


def build_blocks(ctx: ReportContext) -> list[Block]:
    blocks: list[Block] = [Heading(f"kdbench report: {ctx.matrix.name}", 1)]
    if ctx.matrix.description.strip():
        blocks.append(Para(ctx.matrix.description.strip()))
    for section in sections():
        blocks += section(ctx)
    return blocks


def write_report(
    matrix: Matrix,
    tracker,
    out_dir: Path,
    metric: str = "last",
    fmt: str = "md",
    records: list[RunRecord] | None = None,
    costs=None,
) -> Path:
    """Write README.md, runs.csv and plots/ (plus README.html or tables.tex) into out_dir.

    `records`: the store's runs when the caller has already read them (one read, not two);
    `costs`: a `bench perf --matrix` measurement for the cost table."""
    if metric not in METRICS:
        raise SpecError(f"--metric '{metric}': expected {', '.join(METRICS)}")
    if metric == "best_val" and matrix.data.val_per_class is None:
        raise SpecError(
            f"--metric best_val: matrix '{matrix.name}' holds out no validation split; set "
            "data.val_per_class (or report last or best)"
        )
    if fmt not in FORMATS:
        raise SpecError(f"--format '{fmt}': expected {', '.join(FORMATS)}")
    if records is None:
        records = tracker.search()
    if not records:
        raise SpecError(_empty_store(tracker.describe(), _matrix_argument(matrix)))
    results = Results(matrix, collect(matrix, tracker, records))
    if all(c.state == MISSING for c in results.cells):
        others = other_numerics(matrix, records)
        if others:
            made = describe_numerics(numerics_of_run(matrix.runs[0]))
            held = "; ".join(sorted({describe_numerics(n) for n, _ in others}))
            raise SpecError(
                f"no runs of matrix '{matrix.name}' made with {made} in {tracker.describe()}; "
                f"it holds runs made with {held} (report them with --precision/--teacher-cache/"
                "--ranks)"
            )
        elsewhere = settings_held(matrix, records)
        if elsewhere:
            raise SpecError(
                f"no finished runs of matrix '{matrix.name}' as specified in "
                f"{tracker.describe()}; it holds {elsewhere}"
            )
        raise SpecError(
            f"no finished runs of matrix '{matrix.name}' in {tracker.describe()} (none at all); "
            f"run `python -m bench run --matrix {_matrix_argument(matrix)}` first"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    published = PublishedTable(load_published())
    context = ReportContext(matrix, results, metric, published, tracker, out_dir)
    context.other_numerics = other_numerics(matrix, records)
    context.costs = costs
    blocks = build_blocks(context)
    files = ["runs.csv: one line per cell with every parameter, final metric and status"]
    if fmt == "html":
        files.append("README.html: this report as HTML")
    if fmt == "latex":
        files.append("tables.tex: the tables as LaTeX (booktabs)")
    blocks += [Heading("Files"), Bullets(files)]
    readme = out_dir / "README.md"
    atomic_write_text(readme, to_markdown(blocks))
    write_runs_csv(results.cells, out_dir / "runs.csv")
    if fmt == "html":
        html = to_html(blocks, f"kdbench report: {matrix.name}")
        atomic_write_text(out_dir / "README.html", html)
    if fmt == "latex":
        tables = [b for b in blocks if isinstance(b, Table)]
        atomic_write_text(out_dir / "tables.tex", "\n".join(to_latex(t) for t in tables))
    return readme


SETTINGS = ("recipe.", "data.")  # what `--set` changes in a matrix's runs
NOT_SETTINGS = {"data.root"}  # where the data sits differs between machines, not the runs


def settings_held(matrix: Matrix, records: list[RunRecord]) -> str:
    """The finished student runs of this matrix the store holds under other `--set` values, as
    the `--set` options that report them ('' if none)."""
    ours = {k: str(v) for k, v in matrix.runs[0].flat_params().items()
            if k.startswith(SETTINGS) and k not in NOT_SETTINGS}
    found: Counter = Counter()
    for record in records:
        tags = record.tags
        if (record.status != "FINISHED" or tags.get("matrix") != matrix.name
                or tags.get("role") != "student"):
            continue
        differ = tuple(sorted((k, record.params[k]) for k in ours
                              if k in record.params and record.params[k] != ours[k]))
        if differ:
            found[differ] += 1
    return "; ".join(
        f"{n} finished run{'s' if n > 1 else ''} made with "
        + ", ".join(f"{k}={v} (not {ours[k]})" for k, v in differ)
        + ": report them with "
        + " ".join(f"--set {k}={_as_yaml(v)}" for k, v in differ)
        for differ, n in found.most_common(3)
    )


def _as_yaml(logged: str) -> str:
    """A logged parameter as `--set` takes it back: tuples are logged as '(2,)'."""
    if logged.startswith("(") and logged.endswith(")"):
        return "[" + logged[1:-1].rstrip(",").replace(" ", "") + "]"
    return logged


def _matrix_argument(matrix: Matrix) -> str:
    """How the user names this matrix on the command line: a shipped name or its file."""
    return matrix.name if matrix.source.startswith("bench/spec/matrices/") else matrix.source


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
    precision: str | None = None,
    teacher_cache: str | None = None,
    ranks: int | None = None,
) -> Matrix:
    """The matrix to report, built with the data content hash its runs were logged with, so a
    report never reads (or downloads) data: the hash of the matrix's own runs, else any hash in
    the store; where several, the one whose cells the store holds most of. Its numerics
    (precision, teacher-cache dtype, DDP ranks: BatchNorm's per-device batch) are the ones asked
    for, else the ones most of the matrix's runs were made with."""
    raw, _ = read_matrix_yaml(name_or_path)
    name = str(apply_overrides(raw, list(overrides or [])).get("name"))
    if not records:
        raise SpecError(_empty_store(store, name_or_path))
    own = [r for r in records if r.tags.get("matrix") == name]
    tagged = {r.params.get("data_hash") for r in own}
    candidates = sorted((tagged or {r.params.get("data_hash") for r in records}) - {None})
    if not candidates:
        raise SpecError(f"no runs of matrix '{name}' in {store}: nothing to report")
    cell_keys = {r.tags.get("cell_key") for r in records}
    students = [r for r in own if r.tags.get("role") != "teacher"]
    precision = precision or _most_common([numerics_of_record(r)[0] for r in students], "fp32")
    teacher_cache = teacher_cache or _most_common(
        [r.params.get("teacher_cache", "none") for r in students], "none"
    )
    if ranks is not None and ranks < 1:
        raise SpecError(f"--ranks {ranks}: expected a positive number of DDP ranks")
    ranks = ranks or int(_most_common([str(r.params.get("world_size", 1)) for r in students], "1"))

    def build(data_hash: str) -> Matrix:
        return load_matrix(
            name_or_path,
            overrides=overrides,
            seeds=seeds,
            subset_per_class=subset_per_class,
            precision=precision,
            teacher_cache=teacher_cache,
            data_hash=data_hash,
            device="cuda" if precision == "tf32" else "cpu",  # TF32 exists on CUDA only
        ).on_ranks(ranks)

    matrices = [_bind_teacher_files(build(h), students) for h in candidates]
    return max(matrices, key=lambda m: sum(run.cell_key in cell_keys for run in m.runs))


def _bind_teacher_files(matrix: Matrix, students: list[RunRecord]) -> Matrix:
    """Each released teacher keyed by the file its students were made with (the most common one
    where the store holds students of several files)."""
    hashes = {}
    for teacher in matrix.teachers:
        if not teacher.bound:
            found = [r.tags.get("teacher_sha256") for r in students
                     if r.tags.get("teacher") == teacher.arch]
            if any(found):
                hashes[teacher.arch] = _most_common(found, "")
    return matrix.bind_teacher_files(hashes)


def _most_common(values: list, default: str) -> str:
    counts = Counter(v for v in values if v)
    return counts.most_common(1)[0][0] if counts else default


def other_numerics(matrix: Matrix, records: list[RunRecord]) -> Counter:
    """How many runs of the matrix's cells the store holds with other numerics (not pooled), by
    (numerics, DDP ranks)."""
    cells = {run.cell_key for run in matrix.runs}
    wanted = {numerics_of_run(run) for run in matrix.runs}
    return Counter(
        (numerics_of_record(r), int(r.params.get("world_size", 1)))
        for r in records
        if r.tags.get("cell_key") in cells
        and r.tags.get("role") != "teacher"
        and numerics_of_record(r) not in wanted
    )
