"""`bench perf --suite` runs whole on a CPU at its tiny sizes (so it cannot rot) and writes its
JSON and markdown with the device's name."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main

pytestmark = pytest.mark.slow


def test_the_suite_runs_on_the_cpu_and_writes_both_files(tmp_path, capsys):
    assert main(["perf", "--suite", "--device", "cpu", "--out", str(tmp_path), "--workdir",
                 str(tmp_path / "w")]) == 0
    result = json.loads((tmp_path / "suite.json").read_text())
    assert result["device"].startswith("x86_64") or "cpu" in result["device"]
    assert "skipped" in result["cuda_tests"]["result"]  # no CUDA here: said, not hidden
    pairs = {row["pair"] for row in result["loop"]}
    assert pairs == {"resnet56:resnet20", "resnet32x4:resnet8x4"}
    assert all(row["images_per_s"] > 0 for row in result["loop"] if not row["note"])
    assert [sorted(v) for v in result["ab"]["top1"].values()] == [["0", "1"], ["0", "1"]]
    assert result["ab"]["bf16_minus_fp32"].endswith("(2)")
    assert [row["workers"] for row in result["throughput"]] == [1, 2]
    kept = json.loads((tmp_path / "w" / "perf" / "runs-per-device.json").read_text())
    assert kept == {"device": result["device"], "rows": result["throughput"]}  # for bench plan
    text = (tmp_path / "suite.md").read_text()
    assert text.startswith(f"# kdbench perf --suite on {result['device']}")
    for heading in ("## cuda-marked tests", "## The training loop", "## fp32 against bf16",
                    "## Matrix throughput by runs per device"):
        assert heading in text
