"""Protocol: what was run, on what, with which versions; the method parameters."""

from __future__ import annotations

import dataclasses
from collections import Counter

from bench.report.collect import (
    DONE,
    Results,
    other_metric,
    pair_label,
    pair_title,
    selection,
)
from bench.report.render import Block, Bullets, Heading, Para, Table
from bench.report.sections import ReportContext, report_section
from bench.spec import Matrix
from bench.store.cell_state import BLOCKED, FAILED_STATE, MISSING, UNFINISHED
from bench.store.schema import EXECUTION_TAGS, describe_numerics, numerics_of_run


def _distinct(values: list[str]) -> str:
    counts = Counter(v for v in values if v)
    if not counts:
        return "not recorded"
    if len(counts) == 1:
        return f"`{next(iter(counts))}`"
    return ", ".join(f"`{v}` ({n} runs)" for v, n in counts.most_common())


NUMERICS_PARAMS = (
    ("precision", "precision"),
    ("teacher-logit cache", "teacher_cache"),
    ("memory format", "memory_format"),
)
VERSION_TAGS = (("git SHA", "git_sha"), ("torch", "version.torch"), ("mlflow", "version.mlflow"))


def _distinct_of(rows: list[dict], key: str) -> str:
    return _distinct([row.get(key, "") for row in rows])


def _recipe_text(recipe) -> str:
    if recipe.schedule == "cosine":
        schedule = f"cosine-annealed per epoch to {recipe.lr_min:g}"
    else:
        schedule = (
            f"lr × {recipe.lr_decay:g} after epochs "
            f"{', '.join(str(m) for m in recipe.milestones) or '(none)'}"
        )
    return (
        f"{recipe.epochs} epochs, batch {recipe.batch_size}, SGD lr {recipe.lr:g} momentum "
        f"{recipe.momentum:g}{' (Nesterov)' if recipe.nesterov else ''}, weight decay "
        f"{recipe.weight_decay:g}, {schedule}"
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
            how = f"released weights (torchvision {teacher.pretrained})"
        elif teacher.published:
            how = "released file of the published tables (fetched, sha256 in its run's tags)"
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
        rows.append([label, runs[0].method.title or runs[0].method.name, ", ".join(parts) or "—"])
    return Table(["method", "loss", "parameters"], rows, name="methods")


def _method_notes(matrix: Matrix) -> list[Block]:
    notes = {}
    for run in matrix.runs:
        if run.method.note:
            notes[run.method.name] = f"`{run.method.name}`: {run.method.note}"
    return [Bullets(list(notes.values()))] if notes else []


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
    other = other_metric(metric)
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
        f"Primary number: the **{metric}-epoch** test top-1 (%) ({selection(metric)}), mean ± "
        f"sample std over seeds (n = finished seeds); the {selection(other)} mean is reported "
        "beside it. mdistiller keeps the best test top-1 over all epochs (a choice made on the "
        "test set), CRD reports the last epoch: selections are never mixed in one number. "
        + _validation_text(matrix),
        "Data backend "
        + _distinct_of(params, "backend")
        + ", device "
        + _distinct_of(params, "device")
        + f" ({_distinct_of(tags, 'device_name')}) on host {_distinct_of(tags, 'host')}, "
        # runs from before DDP trained in one process
        + "DDP ranks per run " + _distinct([p.get("world_size", "1") for p in params])
        + " (per-rank batch " + _distinct_of(params, "rank_batch_size") + "), "
        + ", ".join(f"{label} {_distinct_of(params, key)}" for label, key in NUMERICS_PARAMS)
        + "; "
        + ", ".join(f"{tag} {_distinct_of(tags, tag)}" for tag in EXECUTION_TAGS)
        + ".",
        "kdbench "
        + _distinct_of(tags, "kdbench_version")
        + ", "
        + ", ".join(f"{label} {_distinct_of(tags, key)}" for label, key in VERSION_TAGS)
        + ".",
        f"Runs read from `{tracker_description}`.",
    ]
    return [Heading("Protocol"), Bullets(items), _method_table(matrix), *_method_notes(matrix)]



def _validation_text(matrix: Matrix) -> str:
    k = matrix.data.val_per_class
    if k is None:
        return ("No validation split (data.val_per_class): the only honest selection here is the "
                "last epoch.")
    return (f"Validation: {k} train images per class held out (the same for every method, seed "
            "and backend); `--metric best_val` reports the test top-1 of the epoch with the best "
            "validation top-1.")


def _numerics_note(ctx: ReportContext) -> list[Block]:
    """Which numerics this report pools, and the runs it leaves out because they differ."""
    run = ctx.matrix.runs[0]
    text = (
        f"Pooled: only runs made with {describe_numerics(numerics_of_run(run))}; runs of the "
        "same cells with another precision (fp32 with TF32 on counts as tf32), teacher-cache "
        "dtype, memory format, deterministic mode or BatchNorm batch (the images one device "
        "normalizes together: a run on N DDP ranks normalizes batch/N) are other experiments and "
        "never enter these means."
    )
    for (numerics, ranks), count in sorted(ctx.other_numerics.items()):
        precision, cache = numerics[0], numerics[1]
        text += (
            f" The store also holds {count} run(s) with {describe_numerics(numerics)}: "
            f"`python -m bench report --precision {precision} --teacher-cache {cache} "
            f"--ranks {ranks}`."
        )
    return [Para(text)]


@report_section(10)
def protocol(ctx: ReportContext) -> list[Block]:
    blocks = protocol_section(ctx.matrix, ctx.results, ctx.metric, ctx.tracker.describe())
    return blocks[:2] + _numerics_note(ctx) + blocks[2:]
