"""Failure isolation, retry, independence of cells, shards."""

import os
import subprocess
import sys

import pytest

from bench.__main__ import main
from bench.engine.binding import load_matrix
from bench.engine.cells import CellFilter
from bench.store.trackers import FAILED, FINISHED, MlflowTracker
from tests.runner_helpers import runs_by_label, same_weights, weights_of, write_tiny

pytestmark = pytest.mark.slow


def test_nan_cell_fails_alone_and_retry_reruns_only_it(tmp_path, monkeypatch, capsys):
    matrix = write_tiny(tmp_path, methods="[ce, kd, dkd]")
    workdir = tmp_path / "work"
    monkeypatch.setenv("KDBENCH_FAULT", "nan:2:* kd seed0")
    monkeypatch.setattr("sys.stdin", None, raising=False)
    code = main(["run", "--matrix", str(matrix), "--workdir", str(workdir)])
    out = capsys.readouterr().out
    assert code == 1
    runs = runs_by_label(workdir)
    kd = runs[("student", "kd", "0")]
    assert kd.status == FAILED and kd.tags["failure_epoch"] == "2"
    assert "non-finite" in kd.tags["failure_reason"]
    assert runs[("student", "ce", "0")].status == FINISHED
    assert runs[("student", "dkd", "0")].status == FINISHED
    assert "FAILED resnet8->resnet8 kd seed0: epoch 2: non-finite" in out

    again = main(["run", "--matrix", str(matrix), "--workdir", str(workdir)])
    assert again == 1 and "--retry-failed" in capsys.readouterr().out

    monkeypatch.delenv("KDBENCH_FAULT")
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "done: 1 trained, 2 already finished, 0 failed" in out
    statuses = sorted(r.status for r in MlflowTracker(workdir).search()
                      if r.tags["method_label"] == "kd")
    assert statuses == [FAILED, FINISHED]


def test_cell_alone_equals_cell_after_another(tmp_path):
    alone, after = tmp_path / "alone", tmp_path / "after"
    alone.mkdir()
    after.mkdir()
    assert main(["run", "--matrix", str(write_tiny(alone, methods="[kd]")),
                 "--workdir", str(alone / "work")]) == 0
    assert main(["run", "--matrix", str(write_tiny(after, methods="[dkd, kd]")),
                 "--workdir", str(after / "work")]) == 0
    a = runs_by_label(alone / "work")[("student", "kd", "0")]
    b = runs_by_label(after / "work")[("student", "kd", "0")]
    assert a.tags["cell_key"] == b.tags["cell_key"]
    timing = {"img_per_s"}
    assert {k: v for k, v in a.metrics.items() if k not in timing} == {
        k: v for k, v in b.metrics.items() if k not in timing}
    assert same_weights(weights_of(alone / "work", a), weights_of(after / "work", b))


def test_two_shards_cover_every_cell_once_and_train_the_teacher_once(tmp_path):
    workdir = tmp_path / "work"
    seeds = 4  # shards follow run keys: with these, both shards hold students of the teacher
    matrix_file = write_tiny(tmp_path, methods="[ce, kd]", seeds=seeds)
    matrix = load_matrix(str(matrix_file), workdir=workdir)
    needs_teacher = [any(r.teacher and CellFilter((i, 2))(r) for r in matrix.runs) for i in (0, 1)]
    assert all(needs_teacher), "pick seeds so both shards need the teacher"

    processes = []
    for i in (0, 1):
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/shard{i}.db")
        env.pop("KDBENCH_FAULT", None)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--matrix", str(matrix_file),
             "--workdir", str(workdir), "--shard", f"{i}/2"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err

    records = []
    for i in (0, 1):
        records += MlflowTracker(workdir, f"sqlite:///{tmp_path}/shard{i}.db").search()
    assert all(r.status == FINISHED for r in records)
    students = [r.tags["cell_key"] for r in records if r.tags["role"] == "student"]
    assert sorted(students) == sorted(r.cell_key for r in matrix.runs)
    assert len([r for r in records if r.tags["role"] == "teacher"]) == 1


def test_a_claimed_cell_is_skipped_and_a_released_claim_is_taken_over(tmp_path, capsys):
    from bench.locks import try_lock

    matrix_file = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    (run,) = load_matrix(str(matrix_file), workdir=workdir).runs
    claim = try_lock(workdir / "locks" / f"run-{run.run_key}.lock")  # another live worker
    assert claim is not None
    assert main(["run", "--matrix", str(matrix_file), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "claimed by another worker, skipped" in out and "0 trained" in out
    claim.close()  # the worker dies: the OS drops its lock
    assert main(["run", "--matrix", str(matrix_file), "--workdir", str(workdir)]) == 0
    assert "1 trained" in capsys.readouterr().out
