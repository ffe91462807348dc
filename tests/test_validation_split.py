"""`data.val_per_class`: K train images per class held out (by a hash of the image index) for
validation, the same for every method, seed, backend and resume; each epoch logs val top-1 and
"best on validation" is the test top-1 of the epoch with the best validation top-1."""

from __future__ import annotations

import pytest

from bench.data.loaders import make_loaders
from bench.spec import DataSpec, load_matrix
from tests.test_data_backends import BACKENDS, CONFIG, batches, file_arrays, first_per_class

K = 3


def loaders(workdir, backend, seed=0, val_per_class=K, **data):
    spec = DataSpec(dataset="synthetic", backend=backend, synthetic=CONFIG,
                    val_per_class=val_per_class, **data)
    return make_loaders(spec, batch_size=16, seed=seed, device="cpu", workdir=workdir)


def indices(loader, epoch=0) -> list[int]:
    return [int(i) for _, _, batch in batches(loader, epoch) for i in batch]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("validation")


def test_the_held_out_images_are_fixed_across_backends_and_seeds_and_never_trained_on(workdir):
    loaders(workdir, "memory")  # generates the data
    labels = file_arrays(workdir, "train")
    reference = None
    for backend in BACKENDS:
        for seed in (0, 1):
            split = loaders(workdir, backend, seed)
            val, train = indices(split.val), indices(split.train, epoch=2)
            assert len(val) == K * CONFIG["classes"] and not set(val) & set(train)
            assert sorted(val + train) == list(range(len(labels.labels)))
            reference = reference or val
            assert val == reference, (backend, seed)
    per_class = [int(labels.labels[i]) for i in reference]
    assert sorted(per_class) == sorted(list(range(CONFIG["classes"])) * K)
    assert reference != first_per_class(labels.labels, K)  # spread over the file by the hash
    # the validation images are served unaugmented, as test images are
    plain = loaders(workdir, "memory", augment=False)
    for (x, _, _), (y, _, _) in zip(batches(split.val, 0), batches(plain.val, 0), strict=True):
        assert x.equal(y)


def test_a_subset_is_cut_from_what_validation_leaves(workdir):
    split = loaders(workdir, "memory", subset_per_class=5)
    val, train = set(indices(split.val)), indices(split.train)
    assert len(train) == 5 * CONFIG["classes"] and not val & set(train)
    assert indices(split.val) == indices(loaders(workdir, "memory").val)


def test_val_per_class_keys_the_cell_only_when_set():
    plain = load_matrix("smoke", data_hash="h")
    held = load_matrix("smoke", data_hash="h", overrides=["data.val_per_class=5"])
    assert {r.cell_key for r in plain.runs}.isdisjoint({r.cell_key for r in held.runs})
    assert "val_per_class" not in plain.runs[0].cell()["data"]


def test_too_many_held_out_images_is_one_line(tmp_path, capsys):
    from bench.__main__ import main

    code = main(["run", "--matrix", "smoke", "--workdir", str(tmp_path), "--tracking", "none",
                 "--set", "data.val_per_class=100", "--set", "recipe.epochs=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err[-1].startswith("error: data.val_per_class: 100 of class 0's")


def test_imagenet_size_folders_are_refused_in_one_line():
    from bench.errors import SpecError
    from bench.spec.schema import check_data

    with pytest.raises(SpecError, match="data.val_per_class: a validation split is held out"):
        check_data(DataSpec(dataset="imagenet", val_per_class=50))


def test_best_on_validation_is_the_test_top1_of_the_best_validation_epoch_and_resumes(
    tmp_path, monkeypatch
):
    from bench.__main__ import main
    from bench.store.trackers import MlflowTracker
    from tests.runner_helpers import runs_by_label, write_tiny

    matrix = write_tiny(tmp_path, methods="[kd]")
    matrix.write_text(matrix.read_text().replace("seed: 3}", "seed: 3}\n  val_per_class: 4"))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["run", "--matrix", str(matrix), "--workdir", str(whole)]) == 0
    monkeypatch.setenv("KDBENCH_FAULT", "enospc:3")  # stops with epoch 2's checkpoint kept
    assert main(["run", "--matrix", str(matrix), "--workdir", str(killed)]) == 1
    monkeypatch.delenv("KDBENCH_FAULT")
    assert main(["run", "--matrix", str(matrix), "--workdir", str(killed)]) == 0
    finals = []
    for workdir in (whole, killed):
        record = runs_by_label(workdir)[("student", "kd", "0")]
        tracker = MlflowTracker(workdir)
        val = [v for _, v in tracker.history(record.run_id, "val/top1")]
        test = [v for _, v in tracker.history(record.run_id, "test/top1")]
        assert len(val) == len(test) == 3
        chosen = val.index(max(val))  # the first of equal epochs
        assert record.metrics["best_val_epoch"] == chosen + 1
        assert record.metrics["best_val_top1"] == test[chosen]
        assert record.metrics["best_top1"] == max(test)
        finals.append({k: v for k, v in record.metrics.items() if k.startswith(("best", "val"))})
    assert finals[0] == finals[1]
    out = tmp_path / "report"
    assert main(["report", "--matrix", str(matrix), "--workdir", str(whole), "--out", str(out),
                 "--metric", "best_val"]) == 0
    text = (out / "README.md").read_text()
    assert "## Leaderboard: best-on-validation (test top-1 at the best validation epoch)" in text
    assert "### Best-epoch (best on test, as mdistiller) test top-1" not in text
    assert "### Last-epoch test top-1" in text  # the other number beside it, named
    assert "Validation: 4 train images per class held out" in text
    row = [line for line in text.splitlines() if line.startswith("| resnet8 (")][0]
    best_val = runs_by_label(whole)[("student", "kd", "0")].metrics["best_val_top1"]
    assert f"{best_val:.2f}" in row


def test_best_val_without_a_validation_split_is_one_line(tmp_path, capsys):
    from bench.__main__ import main
    from tests.runner_helpers import write_tiny

    matrix = write_tiny(tmp_path, methods="[ce]")
    matrix.write_text(matrix.read_text().replace("epochs: 3", "epochs: 1"))
    assert main(["run", "--matrix", str(matrix), "--workdir", str(tmp_path), "--tracking",
                 "none"]) == 0
    capsys.readouterr()
    code = main(["report", "--matrix", str(matrix), "--workdir", str(tmp_path), "--tracking",
                 "none", "--out", str(tmp_path / "r"), "--metric", "best_val"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "error: --metric best_val: matrix 'tiny' holds out no validation split; set "
        "data.val_per_class (or report last or best)"
    ]
    assert not (tmp_path / "r").exists()
