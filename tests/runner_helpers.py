"""A tiny matrix and helpers to run it in-process or as `python -m bench` subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.store.trackers import MlflowTracker

TINY = """\
name: tiny
data:
  dataset: synthetic
  synthetic: {{classes: 4, train_per_class: 24, test_per_class: 6, seed: 3}}
recipe: {{epochs: 3, batch_size: 16, lr: 0.05, milestones: [2]}}
teacher: {{recipe: {{epochs: 1}}}}
pairs: [{{teacher: resnet8, student: resnet8}}]
methods: {methods}
seeds: {seeds}
"""


def write_tiny(folder: Path, methods: str = "[ce, kd]", seeds: int = 1) -> Path:
    path = Path(folder) / "tiny.yaml"
    path.write_text(TINY.format(methods=methods, seeds=seeds))
    return path


def bench_cli(args, workdir: Path, fault: str | None = None, env: dict | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("KDBENCH_FAULT",)}
    full_env.update(env or {})
    if fault:
        full_env["KDBENCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "bench", *args, "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def runs_by_label(workdir: Path, uri: str | None = None) -> dict:
    tracker = MlflowTracker(workdir, uri)
    return {(r.tags["role"], r.tags.get("method_label"), r.tags.get("seed")): r
            for r in tracker.search()}


def weights_of(workdir: Path, record) -> dict:
    path = Path(workdir) / "weights" / f"{record.tags['run_key']}.pt"
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_each_cell_finished_once(store, cells: int, epochs: int) -> list:
    """Every run FINISHED (none left RUNNING), one run per run key (the cells and their teacher),
    and each run's epochs logged once each, in order (the teacher trains 1 epoch)."""
    from collections import Counter

    from bench.store.trackers import FINISHED

    runs = store.search()
    assert Counter(r.status for r in runs) == {FINISHED: len(runs)}
    per_key = Counter(r.tags["run_key"] for r in runs)
    assert len(per_key) == cells + 1 and set(per_key.values()) == {1}, per_key
    for run in runs:
        expected = 1 if run.tags["role"] == "teacher" else epochs
        steps = [step for step, _ in store.history(run.run_id, "test/top1")]
        assert steps == list(range(1, expected + 1)), (run.tags["mlflow.runName"], steps)
    return runs


def wait_for_students_mid_training(proc, work: Path, count: int = 2, uri: str | None = None,
                                   seconds: float = 300) -> None:
    """Until `count` students train past their first committed epoch, each with epochs left (a
    run whose last epoch is committed, as the 1-epoch teacher at once, may finish before a
    signal or a fault lands, and would not be interrupted)."""
    import time

    from bench.store.trackers import RUNNING

    deadline = time.monotonic() + seconds
    while True:
        busy = []
        if uri is not None or (Path(work) / "mlflow.db").is_file():
            busy = [r for r in MlflowTracker(work, uri).search()
                    if r.status == RUNNING and r.tags.get("role") == "student"
                    and r.tags.get("epoch") in ("1", "2")]
        if len(busy) >= count:
            return
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)


def start_workers_run(folder: Path, seeds: int, merged_output: bool = True):
    """`bench run --workers 2` on a tiny (ce, kd) matrix with epochs long enough to interrupt,
    in a session of its own: (process, command, environment, work directory)."""
    matrix = write_tiny(folder, methods="[ce, kd]", seeds=seeds)
    matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 100"))
    work = Path(folder) / "work"
    command = [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--workers", "2",
               "--workdir", str(work)]
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    stderr = subprocess.STDOUT if merged_output else subprocess.PIPE
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                            start_new_session=True)
    return proc, command, env, work
