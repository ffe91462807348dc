"""SLURM through submitit: the real library's LocalExecutor runs a tiny matrix as a job array
of workers; a task that gets SLURM's time-out signal is requeued and its run resumes from the
last epoch checkpoint in the same MLflow run. `--executor slurm --dry-run` prints the array."""

from __future__ import annotations

import os

import pytest

from bench.__main__ import main
from bench.launch import slurm
from bench.spec import load_matrix
from bench.store.trackers import MlflowTracker
from tests.runner_helpers import assert_each_cell_finished_once, write_tiny

pytestmark = pytest.mark.slow


def test_a_job_array_trains_each_cell_once_and_a_timed_out_task_resumes(tmp_path, monkeypatch):
    path = write_tiny(tmp_path, methods="[ce, kd]", seeds=2)
    path.write_text(path.read_text().replace("train_per_class: 24", "train_per_class: 80"))
    work = tmp_path / "work"
    marker = tmp_path / "signalled-once"
    # the first task to reach epoch 2, step 1 gets SIGUSR2, SLURM's signal before the time limit
    monkeypatch.setenv("KDBENCH_FAULT", f"usr2-once:2:1:{marker}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    tracker = MlflowTracker(work)
    jobs, left = slurm.submit(load_matrix(str(path)), tracker=tracker, workdir=work,
                              options=slurm.SlurmOptions(tasks=2, timeout_min=10),
                              cluster="local")
    assert left == 4 and len(jobs) == 2
    results = [job.result() for job in jobs]
    assert marker.is_file()
    assert sum(r["trained"] for r in results) == 4 and not any(r["failed"] for r in results)
    logs = "".join(p.read_text() for p in (work / "slurm").rglob("*_log.*"))
    assert "Requeued job" in logs  # submitit requeued the signalled task

    runs = assert_each_cell_finished_once(MlflowTracker(work), cells=4, epochs=3)
    resumed = [r for r in runs if r.tags.get("resume_count") == "1"]
    assert len(resumed) == 1  # the interrupted run, resumed from its epoch-1 checkpoint


def test_dry_run_prints_the_array_it_would_submit_and_reads_no_data(tmp_path, capsys):
    args = ["run", "--matrix", "cifar100_full", "--executor", "slurm", "--dry-run",
            "--slurm-partition", "a100", "--array-parallelism", "16", "--array-size", "32",
            "--timeout-min", "600",
            "--workdir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("would submit 1 job array of 32 tasks for the 210 cells left")
    for line in ("#SBATCH --array=0-31%16", "#SBATCH --partition=a100", "#SBATCH --time=600",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --signal=USR2@120"):
        assert line in out, line
    assert not (tmp_path / "data").exists() and not os.listdir(tmp_path)  # nothing written
