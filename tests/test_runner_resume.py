"""Killed runs resume from the last committed epoch: same MLflow run, no step twice, same result."""

import signal
import subprocess
import sys
import time

import pytest

from bench.store.trackers import FINISHED, KILLED, MlflowTracker
from tests.runner_helpers import bench_cli, runs_by_label, same_weights, weights_of, write_tiny

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of the tiny matrix."""
    folder = tmp_path_factory.mktemp("reference")
    matrix = write_tiny(folder)
    result = bench_cli(["run", "--matrix", str(matrix)], folder / "work")
    assert result.returncode == 0, result.stderr
    return folder / "work", runs_by_label(folder / "work")


@pytest.mark.parametrize("fault, committed", [("kill-step:2:5", 1), ("kill-rename:2", 1)])
def test_killed_run_resumes_bitwise(tmp_path, reference, fault, committed):
    ref_workdir, ref_runs = reference
    matrix = write_tiny(tmp_path)
    workdir = tmp_path / "work"
    killed = bench_cli(["run", "--matrix", str(matrix)], workdir, fault=fault)
    assert killed.returncode == -signal.SIGKILL
    before = runs_by_label(workdir)
    killed_run = before[("student", "ce", "0")]
    assert killed_run.status == "RUNNING"  # what a real crash leaves behind

    dry = bench_cli(["run", "--matrix", str(matrix), "--dry-run"], workdir)
    assert "resume" in dry.stdout.split()

    resumed = bench_cli(["run", "--matrix", str(matrix)], workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from the checkpoint of epoch {committed}" in resumed.stdout
    assert f"{3 - committed} epochs trained now" in resumed.stdout

    after = runs_by_label(workdir)
    tracker = MlflowTracker(workdir)
    assert all(r.status == FINISHED for r in tracker.search())
    ce = after[("student", "ce", "0")]
    assert ce.run_id == killed_run.run_id
    assert len([r for r in tracker.search() if r.tags["run_key"] == ce.tags["run_key"]]) == 1
    for key in ("test/top1", "train/loss", "train/ce", "lr"):
        steps = [step for step, _ in tracker.history(ce.run_id, key)]
        assert steps == [1, 2, 3], key
    ref_ce = ref_runs[("student", "ce", "0")]
    ref_tracker = MlflowTracker(ref_workdir)
    for key in ("test/top1", "train/loss"):
        assert tracker.history(ce.run_id, key) == ref_tracker.history(ref_ce.run_id, key)
    assert ce.metrics["last_top1"] == ref_ce.metrics["last_top1"]
    assert same_weights(weights_of(workdir, ce), weights_of(ref_workdir, ref_ce))
    kd, ref_kd = after[("student", "kd", "0")], ref_runs[("student", "kd", "0")]
    assert same_weights(weights_of(workdir, kd), weights_of(ref_workdir, ref_kd))
    assert not list((workdir / "checkpoints").glob("*"))  # finished runs leave no checkpoint


def test_sigterm_checkpoints_and_marks_resumable(tmp_path, reference):
    ref_workdir, ref_runs = reference
    matrix = write_tiny(tmp_path, methods="[ce]")
    (tmp_path / "tiny.yaml").write_text(
        (tmp_path / "tiny.yaml").read_text().replace("epochs: 3,", "epochs: 40,"))
    workdir = tmp_path / "work"
    process = subprocess.Popen([sys.executable, "-m", "bench", "run", "--matrix", str(matrix),
                                "--workdir", str(workdir)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((workdir / "checkpoints").glob("*.pt")) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 130
    assert "interrupted; rerun the same command to resume" in out
    (run,) = MlflowTracker(workdir).search()
    assert run.status == KILLED and run.tags["resumable"] == "true"
    assert list((workdir / "checkpoints").glob("*.pt"))
    assert not list((workdir / "checkpoints").glob(".*tmp*"))


def test_checkpoint_of_another_teacher_is_refused(tmp_path):
    import torch

    matrix = write_tiny(tmp_path, methods="[kd]")
    workdir = tmp_path / "work"
    bench_cli(["run", "--matrix", str(matrix)], workdir, fault="kill-step:3:1")
    (ckpt,) = (workdir / "checkpoints").glob("*.pt")
    state = torch.load(ckpt, weights_only=True)
    state["teacher_sha256"] = "0" * 64
    torch.save(state, ckpt)
    result = bench_cli(["run", "--matrix", str(matrix)], workdir)
    assert result.returncode == 1
    assert "refusing to resume" in result.stdout
