"""`bench plan`: the schedule's order, its figures for a big matrix, and its wall-clock against
a real `--workers 2` run on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from argparse import Namespace

import pytest

from bench.__main__ import main
from bench.perf.plan import jobs_left, simulate, slots_for
from bench.spec import load_matrix
from tests.runner_helpers import write_tiny


def test_every_student_starts_after_its_teacher_on_a_matrix_with_two_teachers(tmp_path):
    matrix_file = write_tiny(tmp_path, methods="[ce, kd, dkd]", seeds=3)
    text = matrix_file.read_text().replace(
        "pairs: [{teacher: resnet8, student: resnet8}]",
        "pairs: [{teacher: resnet8, student: resnet8}, {teacher: resnet14, student: resnet8}]")
    matrix_file.write_text(text)
    matrix = load_matrix(str(matrix_file))
    jobs = jobs_left(matrix, tmp_path, set(), None, given=500.0)
    teachers = {j.key: j for j in jobs if j.kind == "teacher"}
    assert sorted(j.name for j in teachers.values()) == ["teacher resnet14", "teacher resnet8"]
    placed = simulate(jobs, slots_for(Namespace(executor="local", gpus=None, workers=3), "cpu"))
    end = {p.job.key: p.end for p in placed}
    students = [p for p in placed if p.job.kind == "student"]
    assert len(students) == len(matrix.runs) == 2 * 3 * 3 - 3  # ce once per student seed
    for p in students:
        if p.job.after is not None:
            assert p.job.after in teachers and p.start >= end[p.job.after], p
    assert any(p.job.after is None and p.start < min(end.values()) for p in students)  # ce waits
    # for no teacher: a free slot takes it while the teachers train


def test_plan_of_the_full_cifar100_matrix_on_8_gpus(tmp_path, capsys):
    out = tmp_path / "plan"
    code = main(["plan", "--matrix", "cifar100_full", "--gpus", "8", "--workers-per-gpu", "2",
                 "--img-per-s", "5000", "--workdir", str(tmp_path / "w"), "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "cells left: 210 of 210" in text and "2,520,000,000 training" in text
    # 2.52e9 / 5000 img/s training + 5.04e8 / 15000 img/s evaluation, in hours
    assert "device-hours: 149.45" in text and "wall-clock: " in text and "disk: weights " in text
    assert (out / "gantt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["schedule"]) == 210 and plan["wall_clock_s"] * 16 >= plan["device_hours"]


@pytest.mark.slow
def test_the_predicted_wall_clock_of_two_workers_is_within_25_percent(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[ce, kd]", seeds=2)
    matrix.write_text(matrix.read_text().replace("train_per_class: 24", "train_per_class: 150"))
    work = tmp_path / "work"
    threads = max(1, (os.cpu_count() or 1) // 2)  # as each of 2 workers has
    assert main(["perf", "--matrix", str(matrix), "--steps", "10", "--device", "cpu",
                 "--threads", str(threads), "--workdir", str(work)]) == 0
    assert main(["plan", "--matrix", str(matrix), "--workers", "2", "--workdir", str(work),
                 "--out", str(tmp_path / "plan")]) == 0
    predicted = json.loads((tmp_path / "plan" / "plan.json").read_text())["wall_clock_s"]
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--workers",
                    "2", "--workdir", str(work)], check=True, env=env, capture_output=True)
    measured = time.monotonic() - started
    print(f"plan predicted {predicted:.1f} s, the run took {measured:.1f} s")
    assert abs(predicted - measured) <= 0.25 * measured, (predicted, measured)


def test_k_runs_per_gpu_take_the_throughput_the_suite_measured_for_k(tmp_path):
    from bench.perf.plan import runs_per_device_speedup

    args = Namespace(executor="local", gpus=2, workers_per_gpu=2, workdir_path=tmp_path)
    unmeasured = slots_for(args, "cuda")
    assert (unmeasured.count, unmeasured.share) == (4, 0.5)
    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "runs-per-device.json").write_text(json.dumps({
        "device": "NVIDIA H100", "rows": [{"workers": 1, "ratio_to_first": 1.0},
                                          {"workers": 2, "ratio_to_first": 1.6}]}))
    measured = slots_for(args, "cuda")
    assert (measured.count, measured.share) == (4, 0.8)
    assert "measured by bench perf --suite on NVIDIA H100" in measured.describe
    assert runs_per_device_speedup(tmp_path, 4)[0] == 1.0  # K=4 not measured: shared
