"""`teacher.source: published`: the released file is fetched (local HTTP or file:// here), its
sha256 recorded and checked, its re-score compared with the paper's accuracy (refused beyond the
release's 0.15 points); with no URL reachable, one line, exit 2 and no run logged."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import tarfile
import threading
from pathlib import Path

import pytest
import torch
import yaml

import model_zoo
from bench.__main__ import main
from bench.store.trackers import FINISHED, JsonLinesTracker, MlflowTracker
from tests.test_hostile import assert_unharmed, one_error_line

MEMBER = "cifar_teachers/{arch}_vanilla/ckpt_epoch_240.pth"


def released_archive(folder: Path, arch: str = "resnet20", seed: int = 0) -> tuple[Path, str]:
    """A tar laid out as mdistiller's cifar_teachers.tar, with one {"model": state_dict} file."""
    torch.manual_seed(seed)
    model = model_zoo.create(arch, num_classes=4)
    checkpoint = folder / f"{arch}-{seed}.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    archive = folder / "cifar_teachers.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(checkpoint, arcname=MEMBER.format(arch=arch))
    return archive, hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def references(folder: Path, url: str, teacher_top1: float | None,
               sha256: dict | None = None) -> Path:
    """A $KDBENCH_REFERENCES folder: a release for the synthetic data (its files pinned by
    `sha256`), and its teacher's paper (no accuracy to check against where `teacher_top1` is
    None)."""
    folder.mkdir(parents=True, exist_ok=True)
    release = {"name": "test-release", "url": url, "member": MEMBER, "tolerance": 0.15,
               "sha256": sha256 or {"resnet20": None}, "sha256_source": "a test"}
    (folder / "teachers.yaml").write_text(yaml.safe_dump({"synthetic": release}))
    row = f"synthetic,resnet20,resnet8,teacher,{teacher_top1},,last,1,,synthetic_release,,a test\n"
    (folder / "published.csv").write_text(
        "dataset,teacher,student,method,top1,top5,metric,runs,std,setup,params,source\n"
        + (row if teacher_top1 is not None else "")
    )
    recipe = {"epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
              "weight_decay": 5.0e-4, "nesterov": False, "milestones": [1], "lr_decay": 0.1}
    setup = {"source": "a test", "dataset": "synthetic", "recipe": recipe}
    (folder / "setups.yaml").write_text(yaml.safe_dump({"synthetic_release": setup}))
    return folder


def matrix_file(folder: Path, seeds: int = 1) -> Path:
    raw = {
        "name": "pubteach",
        "data": {"dataset": "synthetic",
                 "synthetic": {"classes": 4, "train_per_class": 16, "test_per_class": 25}},
        "recipe": {"epochs": 1, "batch_size": 32, "milestones": [1]},
        "teacher": {"source": "published"},
        "pairs": [{"teacher": "resnet20", "student": "resnet8"}],
        "methods": ["kd"],
        "seeds": seeds,
    }
    path = folder / f"pubteach{seeds}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def http_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(matrix: Path, workdir: Path, capsys, tracking: str = "none"):
    code = main(["run", "--matrix", str(matrix), "--workdir", str(workdir), "--device", "cpu",
                 "--tracking", tracking])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, [x for x in captured.err.splitlines() if x.strip()]


def test_a_released_teacher_is_fetched_recorded_rescored_and_refused_beyond_tolerance(
    tmp_path, http_server, monkeypatch, capsys
):
    served, base = http_server
    archive, sha = released_archive(tmp_path)
    archive.rename(served / archive.name)
    url = f"{base}/{archive.name}"
    refs = tmp_path / "refs"
    monkeypatch.setenv("KDBENCH_REFERENCES", str(references(refs, url, 99.0)))
    work = tmp_path / "work"

    code, out, _ = run(matrix_file(tmp_path), work, capsys)
    assert code != 0
    found = re.search(r"re-scored top-1 ([\d.]+) is ([\d.]+) points from the published 99.00", out)
    assert found, out
    rescored = float(found.group(1))
    assert "refused" in out
    # fetched over HTTP once; the extracted file's sha256 is recorded
    folder = work / "teachers" / "published" / "test-release"
    assert (folder / MEMBER.format(arch="resnet20")).is_file()
    assert json.loads((folder / "sha256.json").read_text()) == {
        MEMBER.format(arch="resnet20"): sha
    }
    assert JsonLinesTracker(work).search() == []  # a refused teacher starts no run

    references(refs, url, round(rescored + 0.16, 2))  # just beyond the tolerance
    code, out, _ = run(matrix_file(tmp_path), work, capsys)
    assert code != 0 and "more than the allowed 0.15" in out

    references(refs, url, round(rescored + 0.14, 2))  # within it
    code, out, _ = run(matrix_file(tmp_path), work, capsys)
    assert code == 0, out
    records = JsonLinesTracker(work).search()
    teacher = [r for r in records if r.tags.get("role") == "teacher"]
    student = [r for r in records if r.tags.get("role") == "student"]
    assert [r.tags["teacher_sha256"] for r in teacher] == [sha]
    assert teacher[0].tags["teacher_source"] == "published"
    assert [r.status for r in student] == [FINISHED]
    assert student[0].tags["teacher_sha256"] == sha
    assert student[0].params["teacher.source"] == "published"
    assert student[0].metrics["teacher_top1"] == pytest.approx(rescored, abs=1e-6)
    assert_unharmed(work, "none")


def test_a_file_that_is_not_the_recorded_one_is_refused_before_anything_runs(
    tmp_path, monkeypatch, capsys
):
    archive, sha = released_archive(tmp_path)
    refs = references(tmp_path / "refs", archive.as_uri(), 0.0)  # file:// URL
    monkeypatch.setenv("KDBENCH_REFERENCES", str(refs))
    work = tmp_path / "work"
    run(matrix_file(tmp_path), work, capsys)  # fetched and recorded (then refused: 0.00)
    extracted = work / "teachers" / "published" / "test-release" / MEMBER.format(arch="resnet20")
    (tmp_path / "other").mkdir()
    other, _ = released_archive(tmp_path / "other", seed=1)
    with tarfile.open(other) as tar:
        extracted.write_bytes(tar.extractfile(MEMBER.format(arch="resnet20")).read())
    code, _, err = run(matrix_file(tmp_path, seeds=2), work, capsys)
    assert code == 2
    one_error_line(err, "sha256", "not the recorded", sha[:16], "delete it to fetch it again")
    assert JsonLinesTracker(work).search() == []


def test_no_reachable_url_is_one_line_exit_2_and_no_run(tmp_path, monkeypatch, capsys):
    url = "http://127.0.0.1:9/cifar_teachers.tar"  # the discard port: nothing listens
    monkeypatch.setenv("KDBENCH_REFERENCES", str(references(tmp_path / "refs", url, 50.0)))
    work = tmp_path / "work"
    code, _, err = run(matrix_file(tmp_path), work, capsys, tracking="mlflow")
    assert code == 2
    line = one_error_line(err, "teacher resnet20: cannot fetch", url, "put it at")
    assert str(work / "teachers" / "published" / "test-release" / "cifar_teachers.tar") in line
    assert not (work / "mlflow.db").exists() or MlflowTracker(work).search() == []
    assert_unharmed(work)


def test_a_dataset_without_a_release_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KDBENCH_REFERENCES", raising=False)
    code, _, err = run(matrix_file(tmp_path), tmp_path / "work", capsys)
    assert code == 2
    one_error_line(err, "no released teachers are recorded for dataset 'synthetic'",
                   "teacher.source: trained")


def test_two_released_files_key_their_students_apart_and_a_pin_refuses_another_file(
    tmp_path, monkeypatch, capsys
):
    """Two mirrors of one release name holding different files: their students are other cells
    (never pooled); the same file again is the same cell; a pinned hash refuses the other file
    in one line before anything runs."""
    students, hashes = {}, {}
    for name, seed in (("a", 0), ("b", 1), ("a_again", 0)):
        (tmp_path / name).mkdir()
        archive, hashes[name] = released_archive(tmp_path / name, seed=seed)
        refs = references(tmp_path / f"refs_{name}", archive.as_uri(), None)
        monkeypatch.setenv("KDBENCH_REFERENCES", str(refs))
        work = tmp_path / f"work_{name}"
        code, out, _ = run(matrix_file(tmp_path), work, capsys)
        assert code == 0, out
        [student] = [r for r in JsonLinesTracker(work).search() if r.tags["role"] == "student"]
        assert student.tags["teacher_sha256"] == hashes[name]
        students[name] = student.tags["cell_key"]
    assert students["a"] != students["b"]
    assert students["a"] == students["a_again"]
    assert main(["teachers", "--workdir", str(tmp_path / "work_b")]) == 0
    listing = capsys.readouterr().out
    [line] = [x for x in listing.splitlines() if x.startswith("synthetic ")]
    assert "resnet20" in line and "not pinned" in line and hashes["b"][:16] in line

    pinned = references(tmp_path / "refs_pinned", (tmp_path / "b" / "cifar_teachers.tar").as_uri(),
                        None, sha256={"resnet20": hashes["a"][:12]})
    monkeypatch.setenv("KDBENCH_REFERENCES", str(pinned))
    work = tmp_path / "work_pinned"
    code, _, err = run(matrix_file(tmp_path), work, capsys)
    assert code == 2
    err = [line for line in err if "%|" not in line]  # torch.hub's download progress
    one_error_line(err, "teacher resnet20", hashes["b"][:16], f"not the pinned {hashes['a'][:12]}",
                   "test-release (a test)")
    assert JsonLinesTracker(work).search() == []
    assert main(["teachers", "--workdir", str(work)]) == 0
    listing = capsys.readouterr().out
    [line] = [x for x in listing.splitlines() if x.startswith("synthetic ")]
    assert line.split()[:4] == ["synthetic", "resnet20", "test-release", hashes["a"][:12]]
    assert line.endswith("not fetched") and "test-release: pins from a test" in listing
