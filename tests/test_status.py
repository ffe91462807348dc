"""`bench status --matrix M` reads where a matrix stands from a real store: per state counts,
each running cell with its epoch, host and heartbeat, each failed or blocked cell with why."""

from __future__ import annotations

import time
from types import SimpleNamespace

import yaml

from bench.__main__ import main
from bench.spec import build_matrix, teacher_run
from bench.store.schema import run_tags
from bench.store.trackers import FAILED, FINISHED, MlflowTracker

MATRIX = {
    "name": "status",
    "pairs": [{"teacher": "resnet20", "student": "resnet8"},
              {"teacher": "resnet32", "student": "resnet8x4"}],
    "methods": ["kd", "dkd"],
    "data": {"dataset": "synthetic"},
    "seeds": 1,
}


def _log(tracker, run, status, metrics=None, tags=None):
    teacher = SimpleNamespace(arch=run.teacher.arch, sha256="0" * 64) if run.teacher else None
    run_id = tracker.start(run.name, run.flat_params(), run_tags(run, run.role, teacher))
    if metrics:
        tracker.log_metrics(run_id, metrics, step=1)
    if tags:
        tracker.set_tags(run_id, tags)
    if status != "RUNNING":
        tracker.finish(run_id, status)


def test_status_counts_each_state_and_lists_running_and_failed_cells(tmp_path, capsys):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(MATRIX))
    matrix = build_matrix(MATRIX, "t", data_hash="feedbeef")
    runs = {(r.student, r.method.name): r for r in matrix.runs}
    tracker = MlflowTracker(tmp_path)
    final = {"last_top1": 50.0, "best_top1": 51.0}
    _log(tracker, teacher_run(runs["resnet8", "kd"].teacher, runs["resnet8", "kd"]), FINISHED,
         final)
    _log(tracker, runs["resnet8", "kd"], FINISHED, final)
    _log(tracker, runs["resnet8", "dkd"], "RUNNING", None,
         {"epoch": "7", "host": "node17", "heartbeat": f"{time.time() - 40:.0f}"})
    teacher = teacher_run(runs["resnet8x4", "kd"].teacher, runs["resnet8x4", "kd"])
    _log(tracker, teacher, FAILED, None, {"failure_reason": "loss is NaN", "failure_epoch": "3"})
    _log(tracker, runs["resnet8x4", "dkd"], FAILED, None, {"failure_reason": "CUDA out of memory"})

    args = ["status", "--matrix", str(tmp_path / "m.yaml"), "--workdir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "matrix status: 4 cells: 1 finished, 1 running, 2 blocked"
    running = out[out.index("running:"):].splitlines()[3]
    assert running.split()[:5] == ["resnet20->resnet8", "dkd", "seed0", "7/240", "node17"]
    assert running.rstrip().endswith("s ago") and 35 <= int(running.split()[-3]) <= 120
    failed = out[out.index("failed or blocked:"):]
    assert "resnet32->resnet8x4 kd seed0   blocked  teacher resnet32 failed: loss is NaN" in failed
    # a cell blocked by its teacher's failure says so even where its own run failed too
    assert "resnet32->resnet8x4 dkd seed0  blocked  teacher resnet32 failed: loss is NaN" in failed
