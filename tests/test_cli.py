"""Usage and spec errors: one line naming the bad value and the valid choices, exit 2, no run."""

import subprocess
import sys

import pytest

from bench.__main__ import main


def _run_cli(args, workdir):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_no_runs(workdir):
    db = workdir / "mlflow.db"
    if db.exists():
        from bench.store.trackers import MlflowTracker

        assert MlflowTracker(workdir).search() == []


def test_unknown_matrix(tmp_path):
    result = _run_cli(["run", "--matrix", "nosuch"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nosuch" in lines[0] and "smoke" in lines[0] and "cifar100_full" in lines[0]
    _assert_no_runs(tmp_path)


@pytest.mark.parametrize(
    "field, value, valid",
    [
        ("student", "resnet9", "resnet8"),
        ("teacher", "resnet_nope", "resnet20"),
    ],
)
def test_unknown_model_in_matrix(tmp_path, field, value, valid):
    matrix = tmp_path / "bad.yaml"
    pair = {"teacher": "resnet20", "student": "resnet8"} | {field: value}
    matrix.write_text(
        "name: bad\ndata: {dataset: synthetic}\n"
        f"pairs: [{{teacher: {pair['teacher']}, student: {pair['student']}}}]\n"
        "methods: [kd]\nseeds: 1\n"
    )
    result = _run_cli(["run", "--matrix", str(matrix)], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and value in lines[0] and valid in lines[0]
    _assert_no_runs(tmp_path)


def test_unknown_method_in_matrix(tmp_path, capsys):
    matrix = tmp_path / "bad.yaml"
    matrix.write_text(
        "name: bad\ndata: {dataset: synthetic}\n"
        "pairs: [{teacher: resnet20, student: resnet8}]\nmethods: [kd, fitnet]\n"
    )
    assert main(["run", "--matrix", str(matrix), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fitnet" in err[0] and "dkd" in err[0] and "cakd" in err[0]
    _assert_no_runs(tmp_path)


def test_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in ("run", "report", "list"):
        assert command in result.stdout


def test_list_matrices(capsys):
    assert main(["list", "matrices"]) == 0
    assert "smoke" in capsys.readouterr().out.split()


def test_list_models_shows_resolution_params_and_flops(capsys):
    assert main(["list", "models", "resnet8*"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"resnet8", "resnet8x4"}
    assert rows["resnet8"][1:4] == ["32", "100", "0.08"]  # 83,892 parameters
    assert rows["resnet8x4"][3] == "1.23"  # 1,233,540 parameters
    assert float(rows["resnet8"][5]) * 2 == pytest.approx(float(rows["resnet8"][4]), rel=0.01)
