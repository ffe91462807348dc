"""One run on two processes: DDP with gloo, launched as torchrun does (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), and once through torchrun itself."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.store.trackers import FAILED, FINISHED, KILLED, MlflowTracker
from tests.postgres_server import free_port
from tests.runner_helpers import bench_cli, same_weights, weights_of

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent / "ddp"
PLUGINS = HERE / "plugins"
# A model without BatchNorm; 105 train samples at global batch 16: the last batch (9) splits 5/4
MATRIX = """\
name: ddp_tiny
data:
  dataset: synthetic
  synthetic: {classes: 5, train_per_class: 21, test_per_class: 9, seed: 0, noise: 25, overlap: 0.5}
recipe: {epochs: 3, batch_size: 16, lr: 0.05, milestones: [3]}
teacher: {recipe: {epochs: 1}}
pairs: [{teacher: plainnet_test, student: plainnet_test}]
methods: [kd]
seeds: 1
"""
RANK_TIMEOUT_S = 120


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_FAULT")}
    env.update({"KDBENCH_PLUGINS": str(PLUGINS), "OMP_NUM_THREADS": "1"})
    return env | (extra or {})


def launch(workdir: Path, matrix: Path, *, rank_env: dict | None = None, world: int = 2,
           args: tuple[str, ...] = ()):
    """The ranks of one `bench run`, each with the launcher's variables (and its own extras)."""
    port = free_port()
    processes = []
    for rank in range(world):
        env = _env({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        env.update((rank_env or {}).get(rank, {}))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bench", "run", "--matrix", str(matrix), "--device", "cpu",
             "--workdir", str(workdir), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    return processes


def finish(processes) -> list[tuple[int, str]]:
    """Each rank's exit code and stderr; a rank still running after RANK_TIMEOUT_S fails the
    test, and every rank is killed so none outlives it."""
    try:
        return [(p.wait(timeout=RANK_TIMEOUT_S), p.communicate()[1]) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def kd_run(workdir: Path):
    runs = MlflowTracker(workdir).search()
    students = [r for r in runs if r.tags["role"] == "student"]
    assert len(students) == 1, [r.tags["mlflow.runName"] for r in runs]
    return students[0]


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "ddp_tiny.yaml"
    path.write_text(MATRIX)
    return path


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, matrix_file) -> Path:
    """An uninterrupted 2-rank run of the matrix."""
    workdir = tmp_path_factory.mktemp("two_ranks")
    results = finish(launch(workdir, matrix_file))
    assert [rc for rc, _ in results] == [0, 0], results
    return workdir


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, matrix_file) -> Path:
    workdir = tmp_path_factory.mktemp("one_process")
    result = bench_cli(["run", "--matrix", str(matrix_file), "--device", "cpu"], workdir,
                       env=_env())
    assert result.returncode == 0, result.stderr
    return workdir


def test_two_ranks_reach_the_single_process_weights(two_ranks, one_process):
    """Without BatchNorm, 2 ranks at global batch 16 (8 each; the last batch 5/4, weighted) and
    one process at batch 16 take the same steps: weights within 1e-5, the same per-epoch train
    loss and test top-1."""
    ddp, single = kd_run(two_ranks), kd_run(one_process)
    assert ddp.status == single.status == FINISHED
    ddp_weights, single_weights = weights_of(two_ranks, ddp), weights_of(one_process, single)
    worst = max((ddp_weights[k] - single_weights[k]).abs().max().item() for k in single_weights)
    assert worst < 1e-5
    assert worst > 0 or same_weights(ddp_weights, single_weights)
    store_ddp, store_single = MlflowTracker(two_ranks), MlflowTracker(one_process)
    for metric in ("train/loss", "train/kd", "test/loss"):
        ours = [v for _, v in store_ddp.history(ddp.run_id, metric)]
        theirs = [v for _, v in store_single.history(single.run_id, metric)]
        assert len(ours) == 3 and ours == pytest.approx(theirs, rel=1e-5, abs=1e-6), metric
    for metric in ("train/top1", "test/top1"):
        assert store_ddp.history(ddp.run_id, metric) == store_single.history(single.run_id, metric)
    assert ddp.metrics["last_top1"] == single.metrics["last_top1"]
    # the semantics kept in the run's params: the ranks, and each rank's part of the batch
    assert (ddp.params["world_size"], ddp.params["rank_batch_size"]) == ("2", "8")
    assert (single.params["world_size"], single.params["rank_batch_size"]) == ("1", "16")
    assert ddp.tags["run_key"] != single.tags["run_key"]
    assert ddp.tags["cell_key"] == single.tags["cell_key"]


def test_every_index_once_per_epoch_and_each_test_image_once(tmp_path):
    """Through torchrun: per backend, the ranks' batches all-gathered are the single process's
    global batches (so every train index once per epoch), and sharded evaluation counts each
    test image once with the single process's loss."""
    torchrun = shutil.which("torchrun")
    result = subprocess.run(
        [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port()),
         str(HERE / "probe_sharding.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=RANK_TIMEOUT_S, env=_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for backend in ("memory", "torch", "ffcv"):
        for epoch in (1, 2):
            found = report[f"{backend}/epoch{epoch}"]
            assert found["same_batches"] and found["each_once"], (backend, found)
            assert found["count"] == 105 and found["steps"] == [7, 7]
        assert report[f"{backend}/test_once"], backend
        evaluation = report[f"{backend}/eval"]
        assert evaluation["count"] == evaluation["expected"] == 45
        assert evaluation["loss"][0] == pytest.approx(evaluation["loss"][1], rel=1e-6)


def test_a_stop_then_a_killed_rank_then_the_rerun_resumes_bitwise(tmp_path, matrix_file,
                                                                  two_ranks):
    """SIGTERM on rank 1 only: the ranks agree to stop (at epoch 1's end, the next point where
    they compare), and the run is KILLED and resumable. The same command resumes it; SIGKILL
    rank 1 at epoch 2, step 3: rank 0 exits with an error naming rank 1 (gloo sees the socket
    close, the heartbeats say whose), the run is KILLED and resumable again. The same command
    once more resumes from epoch 1's checkpoint in the same MLflow run and ends bitwise equal to
    the uninterrupted run."""
    stop = {"KDBENCH_FAULT": f"term-once:1:2:{tmp_path / 'term'}", "KDBENCH_FAULT_RANK": "1"}
    (rc0, err0), (rc1, err1) = finish(launch(tmp_path, matrix_file, rank_env={1: stop}))
    assert (rc0, rc1) == (130, 0), (err0[-1500:], err1[-1500:])
    stopped = kd_run(tmp_path)
    assert stopped.status == KILLED and stopped.tags["resumable"] == "true"
    assert [s for s, _ in MlflowTracker(tmp_path).history(stopped.run_id, "test/top1")] == [1]

    kill = {"KDBENCH_FAULT": f"kill-once:2:3:{tmp_path / 'kill'}", "KDBENCH_FAULT_RANK": "1"}
    started = time.monotonic()
    (rc0, err0), (rc1, _) = finish(launch(tmp_path, matrix_file, rank_env={1: kill}))
    assert time.monotonic() - started < RANK_TIMEOUT_S
    assert rc1 == -9 and rc0 == 1, err0
    error = err0.strip().splitlines()[-1]
    assert error.startswith("error: rank 1 of 2 stopped responding"), err0[-2000:]
    killed = kd_run(tmp_path)
    assert killed.run_id == stopped.run_id
    assert killed.status == KILLED and killed.tags["resumable"] == "true"
    assert "rank 1" in killed.tags["failure_reason"]

    results = finish(launch(tmp_path, matrix_file))
    assert [rc for rc, _ in results] == [0, 0], results
    resumed = kd_run(tmp_path)
    assert resumed.run_id == killed.run_id and resumed.status == FINISHED
    assert resumed.tags["resumed_from_epoch"] == "2"
    assert same_weights(weights_of(tmp_path, resumed), weights_of(two_ranks, kd_run(two_ranks)))
    steps = [s for s, _ in MlflowTracker(tmp_path).history(resumed.run_id, "test/top1")]
    assert steps == [1, 2, 3]


def test_nan_on_one_rank_fails_the_run_on_both(tmp_path, matrix_file):
    fault = {"KDBENCH_FAULT": "nan:2:*kd*", "KDBENCH_FAULT_RANK": "1"}
    (rc0, err0), (rc1, err1) = finish(launch(tmp_path, matrix_file, rank_env={1: fault}))
    assert (rc0, rc1) == (1, 0), (err0[-1500:], err1[-1500:])
    failed = kd_run(tmp_path)
    assert failed.status == FAILED
    assert failed.tags["failure_epoch"] == "2"
    assert "non-finite" in failed.tags["failure_reason"]
    assert not (tmp_path / "checkpoints" / f"{failed.tags['run_key']}.pt").exists()


def test_options_that_cannot_work_under_torchrun_are_one_line(monkeypatch, capsys, tmp_path):
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    assert main(["run", "--matrix", "smoke", "--workers", "2", "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --workers: under torchrun every process is one rank")
    assert "\n" not in error
    assert main(["run", "--matrix", "smoke", "--device", "cpu", "--set", "recipe.sync_bn=true",
                 "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: recipe.sync_bn: true: torch's SyncBatchNorm runs on CUDA")
    assert not (tmp_path / "mlflow.db").exists()


SMOKE_SHORT = ["--matrix", "smoke", "--seeds", "1", "--set", "recipe.epochs=1",
               "--set", "methods=[ce,kd]", "--set", "teacher.recipe.epochs=1"]


def _form(report: Path) -> list[str]:
    """A report's form: its headings, and each table's header row and row labels (numbers
    masked: the runs differ in theirs)."""
    lines = report.read_text().splitlines()
    form = [line for line in lines if line.startswith("#")]
    for line in lines:
        if line.startswith("|") and not line.startswith("|--"):
            form.append(re.sub(r"\d+(\.\d+)?", "N", line.split("|")[1].strip()))
    return form


def test_smoke_under_torchrun_finishes_and_reports_like_one_process(tmp_path):
    """`bench run --matrix smoke` under `torchrun --nproc-per-node 2` (one epoch, one seed, two
    methods, to stay short) finishes every cell, and its report has the single process's form."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    result = subprocess.run(
        [shutil.which("torchrun"), "--nproc-per-node", "2", "--master-port", str(free_port()),
         "-m", "bench", "run", *SMOKE_SHORT, "--device", "cpu", "--workdir", str(ddp)],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "with DDP on 2 ranks (gloo): global batch 64, 32 per rank" in result.stdout
    assert result.stdout.count("done: 2 trained") == 1  # rank 0 alone prints
    assert main(["run", *SMOKE_SHORT, "--device", "cpu", "--workdir", str(single)]) == 0
    forms = []
    for workdir in (ddp, single):
        out = workdir / "report"
        assert main(["report", *SMOKE_SHORT, "--workdir", str(workdir), "--out", str(out)]) == 0
        forms.append(_form(out / "README.md"))
        runs = MlflowTracker(workdir).search()
        assert len(runs) == 3 and {r.status for r in runs} == {FINISHED}
    assert forms[0] == forms[1] and len(forms[0]) > 20
    assert "DDP ranks per run `2` (per-rank batch `32`)" in (ddp / "report/README.md").read_text()


def _report_rows(workdir: Path, matrix: Path, *args: str) -> tuple[str, dict[str, dict]]:
    out = workdir / ("report" + "".join(args))
    result = bench_cli(["report", "--matrix", str(matrix), "--out", str(out), *args], workdir,
                       env=_env())
    assert result.returncode == 0, result.stderr
    with open(out / "runs.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    return (out / "README.md").read_text(), rows


def test_batchnorm_runs_on_other_ranks_are_another_group_and_plain_ones_pool(tmp_path):
    """One store, each cell run by one process and by 2 ranks: the BatchNorm student's runs form
    two groups (the report of each names the other), the student without BatchNorm pools."""
    matrix = tmp_path / "ddp_bn.yaml"
    matrix.write_text(MATRIX.replace("name: ddp_tiny", "name: ddp_bn").replace(
        "pairs: [{teacher: plainnet_test, student: plainnet_test}]",
        "pairs: [{teacher: plainnet_test, student: plainnet_test},\n"
        "        {teacher: plainnet_test, student: bnnet_test}]").replace(
        "epochs: 3,", "epochs: 1,"))
    workdir = tmp_path / "store"
    single = bench_cli(["run", "--matrix", str(matrix), "--device", "cpu"], workdir, env=_env())
    assert single.returncode == 0, single.stderr
    assert [rc for rc, _ in finish(launch(workdir, matrix))] == [0, 0]
    text, rows = _report_rows(workdir, matrix, "--ranks", "1")
    assert rows["bnnet_test"]["world_size"] == "1"
    assert "The store also holds 1 run(s) with" in text  # the BatchNorm student's 2-rank run
    assert "batchnorm_batch 8: `python -m bench report" in text and "--ranks 2`" in text
    text2, rows2 = _report_rows(workdir, matrix, "--ranks", "2")
    assert rows2["bnnet_test"]["world_size"] == "2"
    assert "batchnorm_batch 16: `python -m bench report" in text2 and "--ranks 1`" in text2
    # without BatchNorm, both executions stand for one cell in either report
    assert rows["plainnet_test"]["state"] == rows2["plainnet_test"]["state"] == "finished"
    assert "batchnorm_batch none:" not in text + text2


def test_slurm_task_of_eight_gpus_is_one_ddp_group(tmp_path, capsys):
    assert main(["run", "--matrix", "smoke", "--executor", "slurm", "--slurm-gpus-per-task", "8",
                 "--slurm-nodes", "2", "--dry-run", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "each task one DDP group of 16 ranks (2 nodes x 8)" in out
    assert "#SBATCH --ntasks-per-node=8" in out and "#SBATCH --nodes=2" in out
    assert "#SBATCH --gpus-per-node=8" in out


def test_a_method_with_two_backward_passes_is_refused_under_ddp(monkeypatch, capsys, tmp_path):
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    code = main(["run", "--matrix", "smoke", "--set", "methods=[kd_dot]", "--device", "cpu",
                 "--workdir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: method kd_dot: its own optimizer takes two")


def test_sync_bn_keys_the_cell_and_the_ranks_key_the_run():
    import dataclasses

    from bench.spec import load_matrix

    matrix = load_matrix("smoke").bind_data_hash("0123456789abcdef")
    run = matrix.runs[1]
    one, two = matrix.on_ranks(1).runs[1], matrix.on_ranks(2).runs[1]
    # one rank is the single process; that its keys are those from before DDP is proven by the
    # golden keys of tests/test_recipe_schedules.py
    assert (one.run_key, one.cell_key) == (run.run_key, run.cell_key)
    assert two.cell_key == run.cell_key and two.run_key != run.run_key
    synced = dataclasses.replace(run, recipe=dataclasses.replace(run.recipe, sync_bn=True))
    assert synced.cell_key != run.cell_key
    assert "sync_bn" not in run.cell()["recipe"] and synced.cell()["recipe"]["sync_bn"] is True


SUBMIT_ONE_TASK_OF_TWO = """
import json, sys
from pathlib import Path
from bench.launch import slurm
from bench.spec import load_matrix
from bench.store.trackers import MlflowTracker
work = Path(sys.argv[2])
matrix = load_matrix(sys.argv[1], teacher_cache="float32")
jobs, left = slurm.submit(matrix, tracker=MlflowTracker(work), workdir=work,
                          options=slurm.SlurmOptions(tasks=1, timeout_min=10, gpus_per_task=2),
                          cluster="local")
print(json.dumps({"left": left, "results": [job.results() for job in jobs]}))
"""


def test_a_slurm_task_of_two_ranks_is_one_ddp_group(tmp_path, matrix_file, two_ranks):
    """submitit's LocalExecutor runs one array task of 2 processes (as `--slurm-gpus-per-task 2`
    would on a node): submitit's TorchDistributedEnvironment sets the rendezvous, rank 0 works
    the matrix and rank 1 follows it. With the teacher-logit cache (rank 0 builds it before it
    orders the others to train; each rank looks up its part of the batch), it ends bitwise where
    the torchrun-style launch with the teacher's forward ends: a float32 cache is exact."""
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-c", SUBMIT_ONE_TASK_OF_TWO, str(matrix_file),
                           str(work)], capture_output=True, text=True, timeout=300,
                          env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["left"] == 1 and len(found["results"]) == 1
    rank0, rank1 = found["results"][0]
    assert rank0["trained"] == 1 and rank1 == {}
    run = kd_run(work)
    assert run.status == FINISHED and run.params["world_size"] == "2"
    assert run.params["teacher_cache"] == "float32"
    assert same_weights(weights_of(work, run), weights_of(two_ranks, kd_run(two_ranks)))


def test_perf_ddp_names_a_bad_rank_count(capsys):
    assert main(["perf", "--ddp", "1,two", "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: --ddp '1,two': expected rank counts, e.g. 1,2,4,8"
