"""Usage and spec errors: one line naming the bad value and the valid choices, exit 2, no run."""

import json
import subprocess
import sys

import pytest

from bench.__main__ import main


def _run_cli(args, workdir, capsys):
    """`python -m bench ARGS` in this process: (exit code, stdout lines, stderr lines)."""
    code = main([*args, "--workdir", str(workdir)])
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip().splitlines()


def _assert_no_runs(workdir):
    db = workdir / "mlflow.db"
    if db.exists():
        from bench.store.trackers import MlflowTracker

        assert MlflowTracker(workdir).search() == []


def test_unknown_matrix(tmp_path, capsys):
    code, _, lines = _run_cli(["run", "--matrix", "nosuch"], tmp_path, capsys)
    assert code == 2
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
def test_unknown_model_in_matrix(tmp_path, capsys, field, value, valid):
    matrix = tmp_path / "bad.yaml"
    pair = {"teacher": "resnet20", "student": "resnet8"} | {field: value}
    matrix.write_text(
        "name: bad\ndata: {dataset: synthetic}\n"
        f"pairs: [{{teacher: {pair['teacher']}, student: {pair['student']}}}]\n"
        "methods: [kd]\nseeds: 1\n"
    )
    code, _, lines = _run_cli(["run", "--matrix", str(matrix)], tmp_path, capsys)
    assert code == 2
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
    """The one subprocess here: `python -m bench` itself is the entry point users type."""
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


def test_dry_run_lists_the_full_matrix_without_its_data(tmp_path, capsys):
    """No CIFAR-100 on disk: the cells are listed unkeyed, nothing is downloaded or stored."""
    code, out, err = _run_cli(["run", "--matrix", "cifar100_full", "--dry-run"], tmp_path, capsys)
    assert code == 0, err
    cells = [line for line in out if line.startswith("to run")]
    assert len(cells) == 210
    assert "210 cells: 210 to run; ce 45, kd 55, dkd 55, cakd 55" in out
    assert any("CIFAR-100 not under" in line and "downloaded on the first run" in line
               for line in out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no data, no store


def test_print_spec_without_the_data_prints_the_resolved_cell(tmp_path, capsys):
    args = ["run", "--matrix", "cifar100_full", "--print-spec", "resnet56->resnet20 dkd seed0"]
    code, out, err = _run_cli(args, tmp_path, capsys)
    assert code == 0, err
    spec = json.loads("\n".join(out))
    assert spec["cell_key"] is None and "CIFAR-100 not under" in spec["keys"]
    assert spec["cell"]["method"]["params"]["beta"] == 2.0
    assert spec["cell"]["data"]["content_hash"] is None
    assert list(tmp_path.iterdir()) == []
