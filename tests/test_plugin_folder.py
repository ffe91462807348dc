"""A plugin folder ($KDBENCH_PLUGINS, here tests/plugins/) extends `bench run` with files no
other file names: an executor. The test names only the plugin's command-line words."""

from pathlib import Path

import pytest

from tests.runner_helpers import bench_cli, runs_by_label, write_tiny

pytestmark = pytest.mark.slow

PLUGINS = {"KDBENCH_PLUGINS": str(Path(__file__).parent / "plugins")}


def test_a_plugin_executor_runs_the_matrix_through_the_shared_start_up_and_cell_loop(tmp_path):
    matrix = write_tiny(tmp_path)
    work, journal = tmp_path / "work", tmp_path / "journal.txt"
    helped = bench_cli(["run", "--help"], work, env=PLUGINS)
    assert "--executor journal" in helped.stdout and "--journal FILE" in helped.stdout

    refused = bench_cli(["run", "--matrix", str(matrix), "--executor", "journal"], work,
                        env=PLUGINS)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: --executor journal: expected --journal FILE"
    assert not work.exists()  # refused before anything was written

    dry = bench_cli(["run", "--matrix", str(matrix), "--executor", "journal", "--journal",
                     str(journal), "--dry-run"], work, env=PLUGINS)
    assert dry.returncode == 0, dry.stderr
    assert f"execution: this process, journal {journal}; device cpu" in dry.stdout

    ran = bench_cli(["run", "--matrix", str(matrix), "--executor", "journal", "--journal",
                     str(journal)], work, env=PLUGINS)
    assert ran.returncode == 0, ran.stderr
    assert "done: 2 trained, 0 already finished, 0 failed" in ran.stdout
    stored = runs_by_label(work)
    students = {label: run for label, run in stored.items() if label[0] == "student"}
    assert {r.status for r in stored.values()} == {"FINISHED"} and len(students) == 2
    written = sorted(line.split("\t") for line in journal.read_text().splitlines())
    assert written == sorted(["FINISHED", r.tags["mlflow.runName"], r.tags["run_key"]]
                             for r in students.values())

    # the cells it trained are the cells every executor sees: the plain run has nothing left
    again = bench_cli(["run", "--matrix", str(matrix)], work)
    assert again.returncode == 0, again.stderr
    assert "nothing to train, all 2 cells are done" in again.stdout


STRIPES = """\
name: stripes_tiny
data: {dataset: stripes, backend: staged}
recipe: {epochs: 2, batch_size: 16, lr: 0.05, milestones: [2]}
teacher: {recipe: {epochs: 1}}
pairs: [{teacher: resnet8, student: resnet8}]
methods: [ce, kd]
"""


def test_a_plugin_dataset_and_backend_are_named_by_a_matrix_and_trained_by_bench_run(tmp_path):
    matrix, work = tmp_path / "stripes.yaml", tmp_path / "work"
    matrix.write_text(STRIPES)
    unknown = bench_cli(["run", "--matrix", str(matrix), "--set", "data.dataset=strips"], work,
                        env=PLUGINS)
    assert unknown.returncode == 2
    assert "data.dataset='strips' must be one of 'cifar100'," in unknown.stderr
    assert "'stripes'" in unknown.stderr  # the plugin's name is among the choices

    dry = bench_cli(["run", "--matrix", str(matrix), "--dry-run"], work, env=PLUGINS)
    assert dry.returncode == 0, dry.stderr
    assert "data stripes via staged" in dry.stdout
    assert "stripes not generated yet under" in dry.stdout  # its own words, from its file

    journal = tmp_path / "journal.txt"
    ran = bench_cli(["run", "--matrix", str(matrix), "--executor", "journal", "--journal",
                     str(journal)], work, env=PLUGINS)
    assert ran.returncode == 0, ran.stderr
    assert "done: 2 trained" in ran.stdout
    stored = runs_by_label(work)
    assert {r.status for r in stored.values()} == {"FINISHED"} and len(stored) == 3
    assert {r.params["data.dataset"] for r in stored.values()} == {"stripes"}
    assert {r.params["data.backend"] for r in stored.values()} == {"staged"}
    assert len(journal.read_text().splitlines()) == 2

    prepared = bench_cli(["data", "prepare", "--matrix", str(matrix)], work, env=PLUGINS)
    assert prepared.returncode == 0, prepared.stderr
    assert prepared.stdout.strip() == f"ready: {work / 'data' / 'stripes' / 'stripes.npz'}"
