"""A plugin folder ($KDBENCH_PLUGINS, here tests/plugins/) extends `bench run` with files no
other file names: an executor, a dataset and a backend. The test names only the words a user
would write: `--executor journal`, `data.dataset: stripes`, `data.backend: staged`."""

from pathlib import Path

import pytest

from tests.runner_helpers import bench_cli, runs_by_label

pytestmark = pytest.mark.slow

PLUGINS = {"KDBENCH_PLUGINS": str(Path(__file__).parent / "plugins")}

STRIPES = """\
name: stripes_tiny
data: {dataset: stripes, backend: staged}
recipe: {epochs: 2, batch_size: 16, lr: 0.05, milestones: [2]}
teacher: {recipe: {epochs: 1}}
pairs: [{teacher: resnet8, student: resnet8}]
methods: [ce, kd]
"""


def test_a_plugin_executor_dataset_and_backend_are_used_by_bench_run(tmp_path):
    matrix, work, journal = tmp_path / "stripes.yaml", tmp_path / "work", tmp_path / "journal"
    matrix.write_text(STRIPES)
    helped = bench_cli(["run", "--help"], work, env=PLUGINS)
    assert "--executor journal" in helped.stdout and "--journal FILE" in helped.stdout

    # a bad value is one line before anything is written: the plugin's own check, the
    # registry's choices with the plugin's name among them
    refused = bench_cli(["run", "--matrix", str(matrix), "--executor", "journal", "--set",
                         "data.dataset=strips"], work, env=PLUGINS)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: --executor journal: expected --journal FILE"
    assert not work.exists()
    unknown = bench_cli(["run", "--matrix", str(matrix), "--set", "data.dataset=strips",
                         "--dry-run"], work, env=PLUGINS)
    assert unknown.returncode == 2 and "'stripes'" in unknown.stderr
    assert "data.dataset='strips' must be one of 'cifar100'," in unknown.stderr

    args = ["run", "--matrix", str(matrix), "--executor", "journal", "--journal", str(journal)]
    dry = bench_cli([*args, "--dry-run"], work, env=PLUGINS)
    assert dry.returncode == 0, dry.stderr
    assert f"execution: this process, journal {journal}; device cpu" in dry.stdout
    assert "data stripes via staged" in dry.stdout
    assert "stripes not generated yet under" in dry.stdout  # the dataset's own words

    ran = bench_cli(args, work, env=PLUGINS)
    assert ran.returncode == 0, ran.stderr
    assert "done: 2 trained, 0 already finished, 0 failed" in ran.stdout
    stored = runs_by_label(work)
    students = {label: run for label, run in stored.items() if label[0] == "student"}
    assert {r.status for r in stored.values()} == {"FINISHED"} and len(students) == 2
    assert {(r.params["data.dataset"], r.params["data.backend"]) for r in stored.values()} == {
        ("stripes", "staged")}
    written = sorted(line.split("\t") for line in journal.read_text().splitlines())
    assert written == sorted(["FINISHED", r.tags["mlflow.runName"], r.tags["run_key"]]
                             for r in students.values())

    # what it trained is what every executor sees (the same keys): nothing is left
    again = bench_cli(["run", "--matrix", str(matrix)], work, env=PLUGINS)
    assert again.returncode == 0, again.stderr
    assert "nothing to train, all 2 cells are done" in again.stdout
    prepared = bench_cli(["data", "prepare", "--matrix", str(matrix)], work, env=PLUGINS)
    assert prepared.returncode == 0, prepared.stderr
    assert prepared.stdout.strip() == f"ready: {work / 'data' / 'stripes' / 'stripes.npz'}"
