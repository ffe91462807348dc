"""Hostile and clumsy input, faults: each case gets one clear line (or recovers by itself), the
right exit code, and leaves nothing harmed: the store readable, no run left RUNNING, no temp file,
no file written by a pickle's payload."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.__main__ import main
from bench.data.datasets import cifar
from bench.store.trackers import RUNNING, JsonLinesTracker, MlflowTracker
from tests.runner_helpers import bench_cli, write_tiny

pytestmark = pytest.mark.slow


def run_main(args, workdir, capsys):
    """(exit code, stdout, stderr lines) of `python -m bench ARGS --workdir W` in this process."""
    code = main([*args, "--workdir", str(workdir)])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def assert_unharmed(workdir: Path, tracking: str = "mlflow") -> None:
    """The store is there and reads, nothing is left RUNNING, and no temp file is left behind."""
    if tracking == "mlflow":
        assert (workdir / "mlflow.db").is_file(), f"the store {workdir / 'mlflow.db'} is gone"
        records = MlflowTracker(workdir).search()
    else:
        records = JsonLinesTracker(workdir).search()
    assert not [r for r in records if r.status == RUNNING]
    assert not list(workdir.rglob(".*.tmp-*")), list(workdir.rglob(".*.tmp-*"))


def assert_nothing_written(folder: Path) -> None:
    """Only the matrix file in `folder`, and the work directory if at all, empty."""
    written = [p for p in folder.rglob("*") if p.name != "tiny.yaml" and p != folder / "work"]
    assert written == [], written


def one_error_line(err: list[str], *needles: str) -> str:
    errors = [line for line in err if not line.startswith("warning:")]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny matrix (ce, kd) trained to the end: its folder, to copy per test."""
    folder = tmp_path_factory.mktemp("finished")
    matrix = write_tiny(folder)
    assert main(["run", "--matrix", str(matrix), "--workdir", str(folder / "work")]) == 0
    return folder


def leave_a_checkpoint(matrix: Path, workdir: Path, capsys, monkeypatch) -> None:
    """Train until the disk is 'full' at epoch 2: epoch 1's checkpoint is left to resume."""
    monkeypatch.setenv("KDBENCH_FAULT", "enospc:2")
    assert run_main(["run", "--matrix", str(matrix)], workdir, capsys)[0] == 1
    monkeypatch.delenv("KDBENCH_FAULT")
    assert len(list((workdir / "checkpoints").glob("*.pt"))) == 1


def copy_of(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(finished, tmp_path / "copy")
    return tmp_path / "copy" / "tiny.yaml", tmp_path / "copy" / "work"


# ---------------------------------------------------------------- specs: exit 2, before any data


SPEC_CASES = {
    "nan from --set": (["--set", "recipe.lr=.nan"], "recipe.lr=nan must be a finite number"),
    "misspelled method_params": (["--set", "method_params.kdd.temperature=4"], "kdd"),
    "misspelled pair params": (
        ["--set", "pairs=[{teacher: resnet8, student: resnet8, params: {kdd: {beta: 2}}}]"],
        "pairs[0].params.kdd",
    ),
    "unused teacher checkpoint": (
        ["--set", "teacher.checkpoints.resnet21=t.pth"],
        "teacher.checkpoints.resnet21",
    ),
    "bad --set YAML": (["--set", "recipe.milestones=[2"], "--set 'recipe.milestones=[2'"),
    "matrix name as a path": (["--set", "name=../../escape"],
                              "name: '../../escape' is not a safe file name"),
    "label as a path": (["--set", "methods=[{name: kd, label: a/b}]"],
                        "methods[0].label: 'a/b' is not a safe file name"),
    "absolute matrix name": (["--set", "name=/tmp/x"], "name: '/tmp/x' is not a safe file name"),
    "unknown top-level field": (["--set", "nonsense.key=3"], "error: unknown field 'nonsense'; "
                                "valid: name, pairs"),
    "--workers 0": (["--workers", "0"], "--workers 0: expected 1 or more"),
    "--workers under slurm": (["--executor", "slurm", "--workers", "2"],
                              "--workers 2 with --executor slurm: each array task is one worker"),
    "--gpus here": (["--gpus", "99", "--dry-run"], "--gpus 99: this machine has"),
    "--slurm-gpus-per-task abc": (["--slurm-gpus-per-task", "abc"],
                                  "argument --slurm-gpus-per-task: invalid int value: 'abc'"),
    "--only nothing": (["--only", "zzz*"], "--only 'zzz*': no cell of matrix tiny matches"),
}


@pytest.mark.parametrize("case", SPEC_CASES)
def test_spec_errors_are_one_line_exit_2_and_touch_nothing(tmp_path, capsys, case, monkeypatch):
    extra, needle = SPEC_CASES[case]
    matrix = write_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)  # where reports/ would go
    code, _, err = run_main(["run", "--matrix", str(matrix), *extra], tmp_path / "work", capsys)
    assert code == 2
    one_error_line(err, needle)
    assert_nothing_written(tmp_path)


COMMAND_CASES = {
    "perf of an unknown pair": (["perf", "--pair", "nope:nope", "--steps", "1"],
                                "unknown model 'nope'"),
    "perf of a matrix named as a path": (["perf", "--matrix", "ESCAPE", "--steps", "1"],
                                         "name: '../x' is not a safe file name"),
}


@pytest.mark.parametrize("case", COMMAND_CASES)
def test_command_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, case,
                                                              monkeypatch):
    args, needle = COMMAND_CASES[case]
    matrix = write_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = [str(matrix) if a == "ESCAPE" else a for a in args]
    escape = tmp_path / "tiny.yaml"
    escape.write_text(matrix.read_text().replace("name: tiny", "name: ../x"))
    code, _, err = run_main(args, tmp_path / "work", capsys)
    assert code == 2
    one_error_line(err, needle)
    assert_nothing_written(tmp_path)


def test_a_report_of_a_matrix_named_as_a_path_writes_nothing_outside(finished, tmp_path, capsys,
                                                                    monkeypatch):
    matrix, workdir = copy_of(finished, tmp_path)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    before = sorted(tmp_path.rglob("*"))
    for name in ("../../escape", "/tmp/escape", "a/b"):
        code, _, err = run_main(["report", "--matrix", str(matrix), "--set", f"name={name}"],
                                workdir, capsys)
        assert code == 2
        one_error_line(err, f"name: {name!r} is not a safe file name")
    escape = tmp_path / "escape.yaml"
    escape.write_text(matrix.read_text().replace("name: tiny", "name: ../../x"))
    before.append(escape)
    code, _, err = run_main(["leaderboard", "--matrix", str(escape)], workdir, capsys)
    assert code == 2
    one_error_line(err, "name: '../../x' is not a safe file name")
    assert sorted(tmp_path.rglob("*")) == sorted(before) and not Path("/tmp/escape").exists()


def test_list_that_matches_nothing_says_so(capsys):
    assert main(["list", "models", "zzz"]) == 2
    one_error_line(capsys.readouterr().err.splitlines(), "no model matches 'zzz' (case-sensitive)")


def test_an_output_path_never_leaves_its_folder(tmp_path):
    from bench.files import within

    assert within(tmp_path, "a", "b.md") == (tmp_path / "a" / "b.md").resolve()
    for parts in (("..", "x"), ("/etc/passwd",), ("a/../../x",), ("reports/../../x",)):
        with pytest.raises(ValueError, match="leads outside"):
            within(tmp_path, *parts)


def test_slurm_dry_run_says_what_it_leaves_to_slurm_and_what_nodes_must_share(tmp_path, capsys):
    matrix = write_tiny(tmp_path)
    code, out, err = run_main(["run", "--matrix", str(matrix), "--executor", "slurm",
                               "--slurm-gpus-per-task", "0", "--dry-run"], tmp_path / "w",
                              capsys)
    assert code == 0
    assert "gpus-per-node" not in out and "CPU-only tasks (--slurm-gpus-per-task 0)" in out
    assert "SLURM's default partition (no --slurm-partition given)" in out
    assert "claims keep each cell to one task only if the nodes share them" in out
    (warning,) = err
    assert warning.startswith("warning: the store is sqlite:///") and "postgresql://" in warning


def test_dry_run_and_print_spec_say_how_the_cells_would_execute(tmp_path, capsys):
    matrix = write_tiny(tmp_path)
    code, out, _ = run_main(["run", "--matrix", str(matrix), "--dry-run", "--workers", "2"],
                            tmp_path / "w", capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        "execution: 2 worker process(es); device cpu, precision fp32, memory channels_last, "
        f"teacher cache none, data synthetic via memory; store sqlite:///{tmp_path}/w/mlflow.db; "
        f"claims file locks in {tmp_path}/w/locks"
    )
    code, out, _ = run_main(["run", "--matrix", str(matrix), "--print-spec", "*kd*"],
                            tmp_path / "w", capsys)
    spec = json.loads(out)
    assert spec["execution"] | {"store": None} == {
        "device": "cpu", "precision": "fp32", "memory_format": "channels_last",
        "teacher_cache": "none", "world_size": 1, "store": None,
        "claims": f"file locks in {tmp_path}/w/locks",
    }


def test_non_utf8_matrix_names_the_file_and_the_byte(tmp_path, capsys):
    matrix = write_tiny(tmp_path)
    matrix.write_bytes(matrix.read_bytes().replace(b"name: tiny", b"name: t\xe9\xff"))
    code, _, err = run_main(["run", "--matrix", str(matrix)], tmp_path / "work", capsys)
    assert code == 2
    one_error_line(err, str(matrix), "not UTF-8", "0xe9")


def test_yaml_error_names_the_real_line_and_the_reason(tmp_path, capsys):
    matrix = tmp_path / "bad.yaml"
    matrix.write_text("name: bad\nrecipe: {epochs: 2\npairs: []\nmethods: [kd]\n")
    code, _, err = run_main(["run", "--matrix", str(matrix)], tmp_path / "work", capsys)
    assert code == 2
    line = one_error_line(err, "line 2", "flow mapping")
    assert "line 3" not in line


def test_a_method_typo_on_cifar100_is_a_spec_error_not_a_download(tmp_path, capsys):
    args = ["run", "--matrix", "cifar100_full", "--set", "methods=[kd, dkdd]"]
    code, _, err = run_main(args, tmp_path / "work", capsys)
    assert code == 2
    one_error_line(err, "dkdd", "available")
    assert not (tmp_path / "work" / "data").exists()


# ---------------------------------------------------------------- files that fail to load


def test_text_file_as_teacher_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[kd]")
    bad = tmp_path / "t.pth"
    bad.write_text("hello\n")
    args = ["run", "--matrix", str(matrix), "--set", f"teacher.checkpoints.resnet8={bad}"]
    code, out, err = run_main(args, tmp_path / "work", capsys)
    assert code == 1
    assert "Traceback" not in out + "\n".join(err)
    failed = [line for line in out.splitlines() if line.strip().startswith("FAILED")]
    assert len(failed) == 1 and str(bad) in failed[0] and "not a readable torch file" in failed[0]
    assert_unharmed(tmp_path / "work")


def test_a_data_pickle_with_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    root = tmp_path / "data"
    cifar.write_meta(root, [f"c{i}" for i in range(4)])
    cifar.write_split(root, "test", np.zeros((4, 3, 32, 32), np.uint8), np.arange(4))
    with open(cifar.split_files(root)["train"], "wb") as f:
        pickle.dump({"data": Payload(), "fine_labels": [0]}, f, protocol=2)
    with pytest.raises(cifar.DataError) as info:
        cifar.read_split(root, "train", verify=False)
    assert "holds code" in str(info.value) and "refused" in str(info.value)
    assert not marker.exists()


def test_corrupt_resume_checkpoint_is_quarantined_and_the_run_restarts(
    tmp_path, capsys, monkeypatch
):
    matrix = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    leave_a_checkpoint(matrix, workdir, capsys, monkeypatch)
    (ckpt,) = (workdir / "checkpoints").glob("*.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    code, _, err = run_main(["run", "--matrix", str(matrix)], workdir, capsys)
    assert code == 0, err
    assert any("checkpoint unreadable" in line and ckpt.name in line for line in err)
    assert len(list((workdir / "checkpoints").glob("*.pt.corrupt-*"))) == 1
    runs = MlflowTracker(workdir).search()
    ce = [r for r in runs if r.tags.get("method") == "ce"]
    assert sorted(r.status for r in ce) == ["FAILED", "FINISHED"]
    assert "checkpoint unreadable" in next(r for r in ce if r.status == "FAILED").tags[
        "failure_reason"
    ]
    assert_unharmed(workdir)


def test_truncated_cached_teacher_is_quarantined_and_trained_again(finished, tmp_path, capsys):
    matrix, workdir = copy_of(finished, tmp_path)
    (teacher,) = (workdir / "teachers").glob("*.pt")
    teacher.write_bytes(teacher.read_bytes()[:64])
    code, _, err = run_main(["run", "--matrix", str(matrix), "--seeds", "2"], workdir, capsys)
    assert code == 0, err
    assert len(list((workdir / "teachers").glob("*.pt.corrupt-*"))) == 1
    assert teacher.is_file() and teacher.stat().st_size > 64
    assert_unharmed(workdir)


# ---------------------------------------------------------------- stores and disks


def test_truncated_mlflow_db_is_one_line_naming_it(finished, tmp_path, capsys):
    matrix, workdir = copy_of(finished, tmp_path)
    db = workdir / "mlflow.db"
    db.write_bytes(db.read_bytes()[:4096])
    code, _, err = run_main(["run", "--matrix", str(matrix)], workdir, capsys)
    assert code == 1
    one_error_line(err, str(db), "cannot be read", "backup")


def test_empty_mlflow_db_with_checkpoints_adopts_them(tmp_path, capsys, monkeypatch):
    matrix = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    leave_a_checkpoint(matrix, workdir, capsys, monkeypatch)
    (workdir / "mlflow.db").write_bytes(b"")
    # a new process, as a user's rerun is (MLflow keeps its sqlite engine per process)
    rerun = bench_cli(["run", "--matrix", str(matrix)], workdir)
    assert rerun.returncode == 0, rerun.stderr
    assert "does not hold" in rerun.stderr and "Traceback" not in rerun.stderr
    assert "resumed from the checkpoint of epoch 1" in rerun.stdout
    ce = [r for r in MlflowTracker(workdir).search() if r.tags.get("method") == "ce"]
    assert [r.status for r in ce] == ["FINISHED"] and "adopted_checkpoint_of" in ce[0].tags
    assert_unharmed(workdir)


@pytest.fixture(scope="module")
def jsonl_store(tmp_path_factory):
    """A tiny matrix (ce) trained with --tracking none: its folder, to copy per test."""
    folder = tmp_path_factory.mktemp("jsonl")
    matrix = write_tiny(folder, methods="[ce]")
    args = ["run", "--matrix", str(matrix), "--tracking", "none", "--workdir", str(folder / "work")]
    assert main(args) == 0
    return folder


def test_torn_last_line_of_runs_jsonl_is_skipped(jsonl_store, tmp_path, capsys):
    matrix, workdir = copy_of(jsonl_store, tmp_path)
    args = ["run", "--matrix", str(matrix), "--tracking", "none"]
    log = workdir / "runs.jsonl"
    log.write_text(log.read_text() + '{"event": "metrics", "run_id": "ab')  # a torn write
    assert run_main(args, workdir, capsys)[0] == 0
    assert_unharmed(workdir, tracking="none")


def test_bad_middle_line_of_runs_jsonl_names_file_and_line(jsonl_store, tmp_path, capsys):
    matrix, workdir = copy_of(jsonl_store, tmp_path)
    args = ["run", "--matrix", str(matrix), "--tracking", "none"]
    log = workdir / "runs.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2] + ["{garbage\n"] + lines[2:]))
    code, _, err = run_main(args, workdir, capsys)
    assert code == 1
    one_error_line(err, str(log), "line 3")


def test_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    matrix = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    monkeypatch.setenv("KDBENCH_FAULT", "enospc:2")
    code, _, err = run_main(["run", "--matrix", str(matrix)], workdir, capsys)
    assert code == 1
    one_error_line(err, "no space left", "checkpoints", "MiB free")
    assert_unharmed(workdir)
    monkeypatch.delenv("KDBENCH_FAULT")
    code, out, err = run_main(["run", "--matrix", str(matrix)], workdir, capsys)
    assert code == 0, err
    assert "resumed from the checkpoint of epoch 1" in out
    assert_unharmed(workdir)


def test_a_work_dir_that_cannot_be_created_is_one_line(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[ce]")
    (tmp_path / "file").write_text("")
    code, _, err = run_main(["run", "--matrix", str(matrix)], tmp_path / "file" / "w", capsys)
    assert code == 1
    one_error_line(err, f"work directory {tmp_path / 'file' / 'w'} cannot be created (Not a "
                   "directory)")


def test_unwritable_work_dir_is_one_line(tmp_path, capsys, monkeypatch):
    matrix = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    workdir.mkdir()
    locks = workdir / "locks"

    def read_only(path, *args, **kwargs):  # what the OS answers on a read-only mount
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("bench.store.claims.try_lock", read_only)
    code, _, err = run_main(["run", "--matrix", str(matrix)], workdir, capsys)
    assert code == 1
    one_error_line(err, "permission denied", str(locks))


# ---------------------------------------------------------------- messages


def _folder(root: Path, train: list[str], val: list[str]) -> Path:
    from PIL import Image

    for split, classes in (("train", train), ("val", val)):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / name / "a.png")
    return root


def test_image_folder_with_other_val_classes_names_the_class(tmp_path):
    from bench.data.datasets.imagefolder import load_folder

    root = _folder(tmp_path / "f", ["cat", "dog"], ["cat", "emu"])
    with pytest.raises(cifar.DataError, match=r"val/emu has no train/ folder"):
        load_folder(root, None, None)


def test_image_folder_with_one_class_is_one_line_before_any_data_is_prepared(tmp_path, capsys):
    root = _folder(tmp_path / "f", ["cat"], ["cat"])
    matrix = write_tiny(tmp_path)
    data = f"data={{dataset: imagefolder, root: '{root}', resolution: 32}}"
    code, _, err = run_main(["run", "--matrix", str(matrix), "--set", data], tmp_path / "w", capsys)
    assert code == 1  # a data error, as a missing file
    one_error_line(err, f"image folder {root}: train/ holds 1 class folder (cat); expected 2")
    assert not (tmp_path / "w" / "data").exists() or not any((tmp_path / "w" / "data").rglob("*.*"))


def test_zero_byte_image_is_found_when_the_folder_is_hashed(tmp_path):
    from bench.data.datasets.imagefolder import folder_hash

    root = _folder(tmp_path / "f", ["cat"], ["cat"])
    (root / "train" / "cat" / "b.png").write_bytes(b"")
    with pytest.raises(cifar.DataError, match=r"image file is empty: .*b\.png"):
        folder_hash(root)


def test_report_of_only_failed_runs_is_written_with_the_reasons(tmp_path, capsys, monkeypatch):
    matrix = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    monkeypatch.setenv("KDBENCH_FAULT", "nan:1:*")
    assert run_main(["run", "--matrix", str(matrix)], workdir, capsys)[0] == 1
    out = tmp_path / "out"
    code, _, err = run_main(["report", "--matrix", str(matrix), "--out", str(out)], workdir,
                            capsys)
    assert code == 0, err
    text = (out / "README.md").read_text()
    assert "non-finite loss" in text and "failed" in text


def test_a_checkpoint_left_behind_by_a_finished_cell_is_removed(finished, tmp_path, capsys):
    matrix, workdir = copy_of(finished, tmp_path)
    record = next(r for r in MlflowTracker(workdir).search() if r.tags["role"] == "student")
    stale = workdir / "checkpoints" / f"{record.tags['run_key']}.pt"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"left behind by a worker that died after finishing")
    code, out, _ = run_main(["run", "--matrix", str(matrix)], workdir, capsys)
    assert code == 0 and "nothing to train" in out
    assert not stale.exists()


def test_report_hint_names_the_runs_made_with_other_settings(finished, tmp_path, capsys):
    matrix, workdir = copy_of(finished, tmp_path)
    code, _, err = run_main(["report", "--matrix", str(matrix), "--set", "recipe.epochs=1",
                             "--set", "recipe.milestones=[1]"], workdir, capsys)
    assert code == 2
    one_error_line(err, "no finished runs of matrix 'tiny' as specified in ", "it holds 2 "
                   "finished runs made with recipe.epochs=3 (not 1), recipe.milestones=(2,) (not "
                   "(1,)): report them with --set recipe.epochs=3 --set recipe.milestones=[2]")


def test_report_hint_names_the_matrix_file_given(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[ce]")
    code, _, err = run_main(["report", "--matrix", str(matrix)], tmp_path / "work", capsys)
    assert code == 2
    one_error_line(err, f"--matrix {matrix}")


# ---------------------------------------------------------------- signals


def test_ctrl_c_during_start_up_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.store.trackers.open_tracker", interrupted)
    matrix = write_tiny(tmp_path, methods="[ce]")
    code, _, err = run_main(["run", "--matrix", str(matrix)], tmp_path / "work", capsys)
    assert code == 130
    assert err == ["interrupted; rerun the same command to resume"]


def test_sigterm_while_the_teacher_trains_stops_and_the_teacher_resumes(tmp_path, capsys):
    path = write_tiny(tmp_path, methods="[kd]")
    path.write_text(path.read_text().replace("teacher: {recipe: {epochs: 1}}",
                                             "teacher: {recipe: {epochs: 8}}"))
    workdir = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != "KDBENCH_FAULT"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--matrix", str(path), "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    while not list((workdir / "checkpoints").glob("*.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    import torch

    (ckpt,) = (workdir / "checkpoints").glob("*.pt")
    before = torch.load(ckpt, weights_only=True)["epoch"]  # (renamed into place: never torn)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 15  # one step and a checkpoint, not the teacher's 8 epochs
    assert "Traceback" not in err
    teacher = MlflowTracker(workdir).search(role="teacher")
    assert [r.status for r in teacher] == ["KILLED"] and teacher[0].tags["resumable"] == "true"
    (ckpt,) = (workdir / "checkpoints").glob("*.pt")
    # stopped within the epoch the signal came in
    assert torch.load(ckpt, weights_only=True)["epoch"] <= before + 1 < 8
    assert_unharmed(workdir)
    code, _, err = run_main(["run", "--matrix", str(path)], workdir, capsys)
    assert code == 0, err
    teacher = MlflowTracker(workdir).search(role="teacher")
    assert [r.status for r in teacher] == ["FINISHED"]
    assert int(teacher[0].tags["resume_count"]) == 1


def test_sqlite_store_still_reads_after_the_cases(tmp_path):
    """The assert_unharmed helper itself fails on a store with a RUNNING run."""
    tracker = MlflowTracker(tmp_path)
    tracker.start("x", {}, {"run_key": "k"})
    with pytest.raises(AssertionError):
        assert_unharmed(tmp_path)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == 1


def test_unreadable_teacher_cache_file_is_quarantined_and_rebuilt(tmp_path):
    import torch

    import model_zoo
    from bench.engine.teacher_cache import cache_key, load_or_build

    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    index = torch.arange(3)
    path = tmp_path / "teacher_cache" / f"{cache_key('t', 'd', 'float16', 'fp32')}.npy"
    path.parent.mkdir()
    path.write_bytes(b"\x93NUMPY garbage")
    notes = []
    teacher = model_zoo.create("resnet8", num_classes=4).eval()
    cache = load_or_build(teacher, teacher_sha="t", data_hash="d", images=images,
                          file_index=index, dtype="float16", device=torch.device("cpu"),
                          workdir=tmp_path, log=notes.append)
    assert tuple(cache.logits.shape) == (3, 162, 4)
    assert len(list(path.parent.glob("*.corrupt-*"))) == 1
    assert any("unreadable" in note and "rebuilding" in note for note in notes)


def test_temp_files_of_dead_writers_are_removed_at_start(tmp_path, capsys):
    matrix = write_tiny(tmp_path, methods="[ce]")
    workdir = tmp_path / "work"
    (workdir / "checkpoints").mkdir(parents=True)
    dead = workdir / "checkpoints" / ".x.pt.tmp-999999999"
    live = workdir / "checkpoints" / f".y.pt.tmp-{os.getpid()}"
    dead.write_bytes(b"partial")
    live.write_bytes(b"being written")
    assert run_main(["run", "--matrix", str(matrix)], workdir, capsys)[0] == 0
    assert not dead.exists() and live.exists()
