"""Every execution option of a run is in the store, in runs.csv and in the report's protocol:
read back from a real MLflow store after a real (tiny) run."""

import csv

import pytest

from bench.__main__ import main
from tests.runner_helpers import write_tiny

pytestmark = pytest.mark.slow

OPTIONS = ("backend", "device", "precision", "teacher_cache", "memory_format")
FLAGS = ("tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "cudnn_deterministic",
         "deterministic_algorithms")


def test_runs_csv_and_protocol_list_every_execution_option(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[kd]")
    workdir, out = tmp_path / "work", tmp_path / "report"
    short = ["--set", "recipe.epochs=1", "--set", "recipe.milestones=[]", "--subset-per-class", "4"]
    run = ["run", "--matrix", str(matrix), "--workdir", str(workdir), "--teacher-cache", "float16"]
    assert main(run + short) == 0
    assert main(["report", "--matrix", str(matrix), "--workdir", str(workdir), "--out", str(out),
                 *short]) == 0
    with open(out / "runs.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["state"] == "finished"
    assert {key: row[key] for key in OPTIONS} == {
        "backend": "memory", "device": "cpu", "precision": "fp32",
        "teacher_cache": "float16", "memory_format": "channels_last",
    }
    assert row["teacher.source"] == "trained"
    for flag in FLAGS + ("device_type", "device_name", "version.torch"):
        assert row[flag] not in ("", None), flag
    protocol = (out / "README.md").read_text().split("## Leaderboard")[0]
    assert "teacher-logit cache `float16`" in protocol
    assert "memory format `channels_last`" in protocol
    for flag in FLAGS:
        assert f"{flag} `{row[flag]}`" in protocol
