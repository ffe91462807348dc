"""How long the leaderboard takes on a large store: `python -m bench perf --leaderboard
[--runs 5000]`. Fills a temporary store (JSON lines) with about N finished runs of
cifar100_methods (seeds added until N cells; made-up final numbers and img/s), then times reading
the store, gathering the blocks and writing the site. Nothing is trained."""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

MATRIX = "cifar100_methods"


def populate(tracker, matrix, seed: int = 0) -> int:
    from bench.store.schema import run_tags
    from bench.store.trackers import FINISHED

    rng = random.Random(seed)
    for run in matrix.runs:
        teacher = SimpleNamespace(arch=run.teacher.arch, sha256="0" * 64) if run.teacher else None
        run_id = tracker.start(run.name, run.flat_params(), run_tags(run, "student", teacher))
        final = 70 + rng.gauss(0, 1)
        tracker.log_metrics(
            run_id,
            {
                "last_top1": final,
                "best_top1": final + 0.3,
                "img_per_s": 1000 * rng.uniform(0.8, 1.2),
            },
            step=240,
        )
        tracker.finish(run_id, FINISHED)
    return len(matrix.runs)


def measure_leaderboard(runs: int = 5000) -> dict:
    from bench.report.site import build_site, gather
    from bench.spec import load_matrix
    from bench.store.trackers import JsonLinesTracker

    per_seed = len(load_matrix(MATRIX, data_hash="perf", seeds=1).runs)
    seeds = max(1, math.ceil(runs / per_seed))
    matrix = load_matrix(MATRIX, data_hash="perf", seeds=seeds)
    with tempfile.TemporaryDirectory() as folder:
        tracker = JsonLinesTracker(Path(folder))
        made = populate(tracker, matrix)
        started = time.perf_counter()
        records = tracker.search()
        read = time.perf_counter()
        board = gather([MATRIX], tracker, records, "last")
        gathered = time.perf_counter()
        build_site(board, Path(folder) / "site")
        built = time.perf_counter()
    return {
        "runs": made,
        "seeds": seeds,
        "read_s": read - started,
        "gather_s": gathered - read,
        "site_s": built - gathered,
        "total_s": built - started,
    }


def format_leaderboard(row: dict) -> str:
    return (
        f"leaderboard of {row['runs']} runs ({MATRIX}, {row['seeds']} seeds): read the store "
        f"{row['read_s']:.1f} s, gather the blocks {row['gather_s']:.1f} s, write the site "
        f"{row['site_s']:.1f} s; {row['total_s']:.1f} s in all"
    )
