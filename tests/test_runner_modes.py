"""--tracking none, --isolate and --print-spec on the tiny matrix."""

import json

import pytest

from bench.__main__ import main
from bench.store.trackers import FINISHED, JsonLinesTracker
from tests.runner_helpers import bench_cli, write_tiny

pytestmark = pytest.mark.slow


def test_tracking_none_writes_the_same_records_as_json_lines(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[kd]")
    workdir = tmp_path / "work"
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--tracking", "none"]) == 0
    assert not (workdir / "mlflow.db").exists()
    tracker = JsonLinesTracker(workdir)
    runs = tracker.search()
    assert sorted(r.tags["role"] for r in runs) == ["student", "teacher"]
    assert all(r.status == FINISHED for r in runs)
    student = next(r for r in runs if r.tags["role"] == "student")
    assert [s for s, _ in tracker.history(student.run_id, "test/top1")] == [1, 2, 3]
    assert student.params["method.temperature"] == "4.0"
    assert {"last_top1", "best_top1", "teacher_top1", "train/kd"} <= set(student.metrics)
    capsys.readouterr()
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--tracking", "none"]) == 0
    assert "nothing to train" in capsys.readouterr().out


def test_isolated_cells_run_in_their_own_process(tmp_path):
    matrix = write_tiny(tmp_path, methods="[kd]")
    workdir = tmp_path / "work"
    result = bench_cli(["run", "--matrix", str(matrix), "--isolate", "--tracking", "none"],
                       workdir)
    assert result.returncode == 0, result.stderr
    runs = JsonLinesTracker(workdir).search()
    assert all(r.status == FINISHED for r in runs) and len(runs) == 2


def test_print_spec_shows_the_resolved_cell(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[dkd]")
    assert main(["run", "--matrix", str(matrix), "--workdir", str(tmp_path / "work"),
                 "--print-spec", "*dkd*"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["cell"]["method"]["params"]["beta"] == 8.0
    assert spec["cell"]["method"]["params"]["warmup"] == 20
    assert spec["cell"]["recipe"]["epochs"] == 3
    assert spec["cell"]["teacher"]["arch"] == "resnet8"
    assert len(spec["cell_key"]) == 16


def test_bf16_on_cpu_is_a_different_execution_of_the_same_cell(tmp_path):
    from bench.engine.binding import load_matrix
    from bench.store.trackers import MlflowTracker

    matrix = write_tiny(tmp_path, methods="[dkd]")
    workdir = tmp_path / "work"
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--precision", "bf16"]) == 0
    (run,) = [r for r in MlflowTracker(workdir).search() if r.tags["role"] == "student"]
    assert run.params["precision"] == "bf16" and run.status == FINISHED
    assert all(v == v for v in run.metrics.values())  # no NaN
    fp32 = load_matrix(str(matrix), workdir=workdir).runs[0]
    assert run.tags["cell_key"] == fp32.cell_key and run.tags["run_key"] != fp32.run_key
