"""`bench doctor`: one line per check, the fix for each failure, exit 1 when something blocks
the matrix; each check seen failing by breaking what it checks."""

from __future__ import annotations

import sys

import pytest
import torch

from bench.__main__ import main

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on port 9 (discard)


@pytest.fixture
def offline(monkeypatch):
    """Every download address unreachable, as on a machine without internet."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, UNREACHABLE)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def doctor(args, workdir, capsys) -> tuple[int, dict[str, str]]:
    code = main(["doctor", *args, "--workdir", str(workdir)])
    lines = capsys.readouterr().out.splitlines()
    checks = {line.split(":", 1)[0][6:]: line for line in lines[:-1]}
    assert all(line[:6] in ("ok    ", "warn  ", "FAIL  ") for line in lines[:-1]), lines
    return code, checks | {"summary": lines[-1]}


def test_the_smoke_matrix_is_ready_here(tmp_path, capsys):
    code, checks = doctor([], tmp_path / "w", capsys)
    assert code == 0, checks
    assert checks["summary"] == "matrix smoke: ready here"
    for name in ("devices", "numerics", "ffcv", "work directory", "store", "data", "disk"):
        assert name in checks, checks
    assert not [line for line in checks.values() if line.startswith("FAIL")]
    assert "precision fp32: tf32_matmul false, tf32_cudnn false" in checks["numerics"]


def test_cifar100_full_names_what_is_missing_with_the_fix(tmp_path, capsys, offline):
    code, checks = doctor(["--matrix", "cifar100_full"], tmp_path / "w", capsys)
    assert code == 1
    if not torch.cuda.is_available():
        assert checks["devices"].startswith("FAIL  devices: no CUDA device")
        assert "-> fix: a machine with an NVIDIA GPU" in checks["devices"]
    assert checks["data"].startswith("FAIL  data: CIFAR-100 not under")
    assert "-> fix: copy cifar-100-python.tar.gz into" in checks["data"]
    (teachers,) = [line for name, line in checks.items() if name.startswith("teachers ")]
    assert teachers.startswith("FAIL  teachers ResNet50, resnet110, resnet32x4")
    assert "cifar_teachers.tar unreachable" in teachers and "-> fix: download " in teachers
    assert checks["summary"].startswith("matrix cifar100_full: ") and "block it here" in checks[
        "summary"]


def test_a_work_directory_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    code, checks = doctor([], blocker / "w", capsys)
    assert code == 1
    assert checks["work directory"].startswith(f"FAIL  work directory: {blocker / 'w'} is not "
                                               "writable")


def test_a_store_that_does_not_answer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    code, checks = doctor([], tmp_path / "w", capsys)
    assert code == 1
    assert checks["store"].startswith(f"FAIL  store: MLflow server {UNREACHABLE} cannot be "
                                      "reached")


def test_a_claims_database_that_does_not_answer(tmp_path, capsys):
    code, checks = doctor(["--claims", "postgresql://kd@127.0.0.1:9/db"], tmp_path / "w", capsys)
    assert code == 1
    assert checks["claims"].startswith("FAIL  claims: KDBENCH_CLAIMS: cannot connect to "
                                       "postgresql://kd@127.0.0.1:9/db")


def test_ffcv_that_does_not_import_blocks_only_an_ffcv_matrix(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # what `import ffcv` meets when it is missing
    code, checks = doctor([], tmp_path / "w", capsys)
    assert code == 0 and checks["ffcv"].startswith("warn  ffcv: cannot import (ModuleNotFoundError")
    code, checks = doctor(["--set", "data.backend=ffcv"], tmp_path / "w", capsys)
    assert code == 1 and checks["ffcv"].startswith("FAIL  ffcv: cannot import")
    assert "-> fix: apt-get install libopencv-dev libturbojpeg0-dev" in checks["ffcv"]


def test_too_little_disk(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDBENCH_FAULT", "disk-free:1000")
    code, checks = doctor([], tmp_path / "w", capsys)
    assert code == 1
    assert checks["disk"].startswith("FAIL  disk: needs about ") and "0.00 GB free" in checks[
        "disk"]


def test_slurm_without_sbatch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    code, checks = doctor(["--executor", "slurm"], tmp_path / "w", capsys)
    assert code == 1
    assert checks["slurm"] == ("FAIL  slurm: submitit imports, but no sbatch on PATH -> fix: run "
                               "on a SLURM login node (or load its module)")
