"""How long a report takes on a large store: `python -m bench.perf.report [--runs 1000]`.

Fills a temporary MLflow store with about N runs of cifar100_full (seeds added until N cells;
240 epochs of per-epoch metrics each, made-up numbers), then times reading and writing the
report. Nothing is trained; the store is deleted afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

EPOCH_METRICS = ("test/top1", "test/top5", "test/loss", "train/loss", "train/top1", "lr")


def _curve(final: float, epoch: int, epochs: int, rng: random.Random) -> float:
    return final * (1 - math.exp(-6 * epoch / epochs)) + rng.gauss(0, 0.3)


def populate(tracker, matrix, epochs: int, seed: int = 0) -> int:
    """Log every cell of `matrix` as a finished run with per-epoch metrics; returns the count."""
    from bench.store.schema import run_tags
    from bench.store.trackers import FINISHED

    rng = random.Random(seed)
    batch = getattr(getattr(tracker, "client", None), "log_batch", None)
    for run in matrix.runs:
        teacher = SimpleNamespace(arch=run.teacher.arch, sha256="0" * 64) if run.teacher else None
        tags = run_tags(run, "student", teacher) | {
            "kdbench_version": "perf",
            "git_sha": "0" * 40,
            "device_name": "none",
        }
        run_id = tracker.start(run.name, run.flat_params(), tags)
        final = 70 + rng.gauss(0, 1)
        rows = {
            e: {
                "test/top1": _curve(final, e, epochs, rng),
                "test/top5": _curve(90, e, epochs, rng),
                "test/loss": 1.0,
                "train/loss": 1.0,
                "train/top1": 80.0,
                "lr": run.recipe.lr_at(e),
            }
            for e in range(1, epochs + 1)
        }
        if batch is not None:  # MLflow: many epochs per call (the store holds the same rows)
            from mlflow.entities import Metric

            items = [Metric(k, v, 0, e) for e, metrics in rows.items() for k, v in metrics.items()]
            for i in range(0, len(items), 1000):
                batch(run_id, metrics=items[i : i + 1000])
        else:
            for e, metrics in rows.items():
                tracker.log_metrics(run_id, metrics, step=e)
        if teacher is not None:
            tracker.log_metrics(run_id, {"teacher_top1": 75.0}, step=0)
        last = rows[epochs]["test/top1"]
        best_epoch = max(rows, key=lambda e: rows[e]["test/top1"])
        tracker.log_metrics(
            run_id,
            {
                "last_top1": last,
                "last_top5": rows[epochs]["test/top5"],
                "best_top1": rows[best_epoch]["test/top1"],
                "best_top5": rows[best_epoch]["test/top5"],
                "best_epoch": best_epoch,
            },
            step=epochs,
        )
        tracker.finish(run_id, FINISHED)
    return len(matrix.runs)


def main(argv: list[str] | None = None) -> int:
    from bench.report import Results, collect, fetch_histories, write_report
    from bench.spec import load_matrix
    from bench.store.trackers import MlflowTracker

    parser = argparse.ArgumentParser(prog="python -m bench.perf.report")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=240)
    parser.add_argument("--workdir", help="reuse (or keep) this store instead of a temporary one")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kdbench-report-perf-"))
    per_seed = len(load_matrix("cifar100_full", data_hash="perf", seeds=1).runs)
    seeds = max(1, round(args.runs / per_seed))
    matrix = load_matrix(
        "cifar100_full",
        data_hash="perf",
        seeds=seeds,
        overrides=[f"recipe.epochs={args.epochs}"],
    )
    tracker = MlflowTracker(workdir)
    try:
        if not tracker.search():
            t0 = time.perf_counter()
            n = populate(tracker, matrix, args.epochs)
            print(f"populated {n} runs x {args.epochs} epochs in {time.perf_counter() - t0:.0f} s")
        timings = {}
        t0 = time.perf_counter()
        records = tracker.search()
        timings["search (one call)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = Results(matrix, collect(matrix, tracker, records))
        timings["collect"] = time.perf_counter() - t0
        ids = [c.record.run_id for c in results.cells if c.record]
        t0 = time.perf_counter()
        fetch_histories(tracker, ids, "test/top1")
        timings[f"histories ({len(ids)} runs)"] = time.perf_counter() - t0
        out = workdir / "report"
        t0 = time.perf_counter()
        write_report(matrix, tracker, out, records=records)
        timings["write_report (given the records)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_report(matrix, tracker, out)
        timings["write_report (search included)"] = time.perf_counter() - t0
        print(f"{len(records)} runs, {len(matrix.pairs)} pairs, {len(matrix.seeds)} seeds")
        for name, seconds in timings.items():
            print(f"  {name:38} {seconds:6.2f} s")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
