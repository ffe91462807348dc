"""Teachers from files: sha256 recorded, re-scored once, wrong files block their students."""

import pytest
import torch

import model_zoo
from bench.__main__ import main
from bench.store.trackers import FINISHED, MlflowTracker
from tests.runner_helpers import write_tiny

pytestmark = pytest.mark.slow


def test_teacher_file_is_hashed_rescored_and_recorded(tmp_path, capsys):
    torch.manual_seed(5)
    teacher = model_zoo.create("resnet8", num_classes=4)
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"model": teacher.state_dict()}, path)
    sha = model_zoo.sha256_file(path)
    matrix = write_tiny(tmp_path, methods="[kd]")
    workdir = tmp_path / "work"
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--set", f"teacher.checkpoints.resnet8={path}"]) == 0
    assert f"sha256 {sha[:12]}" in capsys.readouterr().out
    runs = MlflowTracker(workdir).search()
    student = next(r for r in runs if r.tags["role"] == "student")
    loaded = next(r for r in runs if r.tags["role"] == "teacher")
    assert student.tags["teacher_sha256"] == sha == loaded.tags["teacher_sha256"]
    assert student.status == loaded.status == FINISHED
    assert student.metrics["teacher_top1"] == loaded.metrics["teacher_top1"]
    assert len(list((workdir / "teachers").glob("*.pt"))) == 0  # nothing was trained


def test_wrong_teacher_file_blocks_its_students(tmp_path, capsys):
    wrong = model_zoo.create("resnet14", num_classes=4)
    path = tmp_path / "wrong.pth"
    torch.save({"model": wrong.state_dict()}, path)
    matrix = write_tiny(tmp_path, methods="[ce, kd]")
    workdir = tmp_path / "work"
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--set", f"teacher.checkpoints.resnet8={path}"]) == 1
    out = capsys.readouterr().out
    assert "1 trained" in out and "1 blocked" in out
    line = next(line for line in out.splitlines() if "kd seed0" in line and "FAILED" in line)
    assert "teacher failed" in line and "does not fit resnet8" in line
    assert [r.tags["method_label"] for r in MlflowTracker(workdir).search()] == ["ce"]
