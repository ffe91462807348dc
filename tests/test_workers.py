"""`bench run --workers N` on one machine: worker processes share a matrix through the claims,
every cell is trained once, a worker that dies has its cell taken over and resumed in the same
MLflow run, and the results are bitwise those of one process (at the same thread count)."""

from __future__ import annotations

import os

import pytest

from bench.errors import SpecError
from bench.launch.workers import worker_slots
from bench.store.trackers import MlflowTracker
from tests.runner_helpers import (
    assert_each_cell_finished_once,
    bench_cli,
    runs_by_label,
    same_weights,
    start_workers_run,
    wait_for_students_mid_training,
    weights_of,
    write_tiny,
)

pytestmark = pytest.mark.slow


def test_two_workers_take_over_a_dead_workers_cell_and_match_one_process_bitwise(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=3)
    # cells long enough (about a second an epoch) for both workers to be busy at once
    matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 100"))
    threads = str(max(1, (os.cpu_count() or 1) // 2))  # what each of 2 CPU workers gets
    reference = bench_cli(["run", "--matrix", str(matrix)], tmp_path / "one",
                          env={"OMP_NUM_THREADS": threads})
    assert reference.returncode == 0, reference.stderr
    work = tmp_path / "two"
    marker = tmp_path / "killed-once"
    result = bench_cli(["run", "--matrix", str(matrix), "--workers", "2"], work,
                       fault=f"kill-once:2:1:{marker}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert marker.is_file() and "died (exit code -9)" in out  # one worker was SIGKILLed
    assert "database is locked" not in out and "Traceback" not in out

    # no epoch trained or logged twice, the taken-over run included
    runs = assert_each_cell_finished_once(MlflowTracker(work), cells=2 * 3, epochs=3)
    resumed = [r for r in runs if r.tags.get("resume_count") == "1"]
    assert len(resumed) == 1  # the dead worker's cell, taken over in the same MLflow run
    assert "done: 6 trained, 0 already finished" in out
    assert "[worker 0]" in out and "[worker 1]" in out  # both shared the work
    assert {r.tags["torch_threads"] for r in runs} == {threads}

    ours, theirs = runs_by_label(work), runs_by_label(tmp_path / "one")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert same_weights(weights_of(work, ours[key]), weights_of(tmp_path / "one",
                                                                    theirs[key])), key


def test_worker_slots_pin_k_workers_to_each_gpu_and_split_cpu_cores():
    slots = worker_slots(None, ["0", "3"], 2, "cuda")
    assert [(s.device, s.visible_gpu) for s in slots] == [("cuda", "0"), ("cuda", "0"),
                                                         ("cuda", "3"), ("cuda", "3")]
    cpu = worker_slots(2, [], 1, "cpu")
    assert [s.threads for s in cpu] == [max(1, (os.cpu_count() or 1) // 2)] * 2
    with pytest.raises(SpecError, match="--workers 3 with --gpus 0,3 and --workers-per-gpu 2: "
                       "the GPUs give 4 workers"):
        worker_slots(3, ["0", "3"], 2, "cuda")


def test_ctrl_c_stops_every_worker_resumably_and_the_same_command_finishes(tmp_path):
    import signal
    import subprocess

    from bench.store.trackers import KILLED, RUNNING

    proc, command, env, work = start_workers_run(tmp_path, seeds=3)
    wait_for_students_mid_training(proc, work)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    stopped = MlflowTracker(work).search()
    assert not [r for r in stopped if r.status == RUNNING]
    killed = [r for r in stopped if r.status == KILLED]
    assert len(killed) >= 2 and all(r.tags["resumable"] == "true" for r in killed)

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    # each killed run resumed in its own MLflow run
    assert_each_cell_finished_once(MlflowTracker(work), cells=2 * 3, epochs=3)


@pytest.mark.parametrize("args,expected", [
    (["--workers", "0"], "error: --workers 0: expected 1 or more"),
    (["--gpus", "0,0"], "error: --gpus '0,0': expected distinct GPU indices, e.g. 0,1,2,3"),
    (["--workers", "2", "--workers-per-gpu", "0"], "error: --workers-per-gpu 0: expected 1 or "
     "more"),
])
def test_bad_worker_options_are_one_line_before_anything_is_written(args, expected, tmp_path,
                                                                    capsys):
    from bench.__main__ import main

    assert main(["run", "--matrix", "smoke", "--workdir", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expected]
    assert not (tmp_path / "mlflow.db").exists()


def test_workers_on_a_store_with_failed_cells_exit_1_and_name_them(tmp_path):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=2)
    first = bench_cli(["run", "--matrix", str(matrix)], tmp_path / "work", fault="nan:1:*kd*")
    assert first.returncode == 1, first.stdout + first.stderr
    again = bench_cli(["run", "--matrix", str(matrix), "--workers", "2"], tmp_path / "work")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "0 of 4 cells to do" in again.stdout
    assert "2 already finished, 2 failed" in again.stdout
    for seed in (0, 1):
        assert f"  FAILED resnet8->resnet8 kd seed{seed}: " in again.stdout
    assert "(rerun with --retry-failed)" in again.stdout


def test_a_second_workers_parent_takes_the_cores_the_first_leaves(tmp_path):
    """Two `--workers 1` parents on one machine: the first takes every core, the second (which
    starts while the first trains) one thread, not every core again."""
    import subprocess
    import sys
    import time

    from bench.store.trackers import RUNNING

    cores = os.cpu_count() or 1
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"} | {"TMPDIR": str(tmp_path)}

    def parent(name: str) -> subprocess.Popen:
        (tmp_path / name).mkdir()
        # the first must still train when the second registers: a few seconds of work
        matrix = write_tiny(tmp_path / name, methods="[ce]", seeds=3 if name == "a" else 1)
        matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 150"))
        return subprocess.Popen([sys.executable, "-m", "bench", "run", "--matrix", str(matrix),
                                 "--workers", "1", "--workdir", str(tmp_path / name / "work")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)

    first = parent("a")
    deadline = time.monotonic() + 300
    store = tmp_path / "a" / "work"
    while not ((store / "mlflow.db").is_file()
               and any(r.status == RUNNING for r in MlflowTracker(store).search())):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
        time.sleep(0.2)
    second = parent("b")
    out_b = second.communicate(timeout=600)[0]
    out_a = first.communicate(timeout=600)[0]
    assert (first.returncode, second.returncode) == (0, 0), out_a + out_b
    threads = {name: {r.tags["torch_threads"]
                      for r in MlflowTracker(tmp_path / name / "work").search()}
               for name in ("a", "b")}
    assert threads == {"a": {str(cores)}, "b": {str(max(1, cores - cores))}}, threads
    assert f"other kdbench parents hold {cores} threads of this machine's {cores} cores" in out_b
