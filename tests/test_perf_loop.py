"""kdbench's loop against the plain loop, the cache end to end, and `bench perf` on CPU."""

import json

import pytest
import torch

import methods
import model_zoo
from bench.__main__ import main
from bench.data.loaders import make_loaders
from bench.engine.train import build_optimizer, train_epochs
from bench.perf.training import naive_train_epoch
from bench.spec import DataSpec, Recipe
from bench.store.trackers import MlflowTracker
from tests.runner_helpers import runs_by_label, write_tiny

pytestmark = pytest.mark.slow


def test_loop_with_speed_options_off_equals_the_plain_loop(tmp_path):
    data = DataSpec(dataset="synthetic", synthetic={"classes": 4, "train_per_class": 20,
                                                     "test_per_class": 2, "seed": 2})
    loaders = make_loaders(data, batch_size=16, seed=3, device="cpu", workdir=tmp_path)
    torch.manual_seed(0)
    teacher = model_zoo.create("resnet8", num_classes=4).eval()
    recipe = Recipe(epochs=1, lr=0.05)
    trained = {}
    for loop in ("kdbench", "plain"):
        torch.manual_seed(1)
        student = model_zoo.create("resnet8", num_classes=4)
        method = methods.create("dkd", num_classes=4)
        optimizer = build_optimizer(student, recipe, torch.device("cpu"))
        if loop == "kdbench":
            train_epochs(student, method, teacher, loaders, recipe, optimizer,
                         device=torch.device("cpu"), on_epoch=lambda *_: None)
        else:
            naive_train_epoch(student, teacher, method, optimizer, loaders.train.epoch(1),
                              torch.device("cpu"))
        trained[loop] = student.state_dict()
    assert trained["kdbench"].keys() == trained["plain"].keys()
    for key, value in trained["kdbench"].items():
        assert torch.equal(value, trained["plain"][key]), key


def test_run_with_the_cache_matches_the_run_without(tmp_path):
    """Tolerance: float32 cache logits equal fresh ones to ~1e-6, so per-epoch train loss agrees
    to 1e-3 relative and final top-1 within one test image (1/24 = 4.2 points)."""
    curves = {}
    for cache in ("none", "float32"):
        folder = tmp_path / cache
        folder.mkdir()
        matrix = write_tiny(folder, methods="[kd]")
        assert main(["run", "--matrix", str(matrix), "--workdir", str(folder / "work"),
                     "--teacher-cache", cache]) == 0
        record = runs_by_label(folder / "work")[("student", "kd", "0")]
        history = MlflowTracker(folder / "work").history(record.run_id, "train/loss")
        curves[cache] = (history, record)
    (base, base_run), (cached, cached_run) = curves["none"], curves["float32"]
    assert base_run.tags["cell_key"] == cached_run.tags["cell_key"]
    assert base_run.tags["run_key"] != cached_run.tags["run_key"]
    assert [s for s, _ in base] == [s for s, _ in cached] == [1, 2, 3]
    for (_, a), (_, b) in zip(base, cached, strict=True):
        assert abs(a - b) <= 1e-3 * abs(a)
    assert abs(base_run.metrics["last_top1"] - cached_run.metrics["last_top1"]) <= 100 / 24 + 1e-9
    assert list((tmp_path / "float32" / "work" / "teacher_cache").glob("*.npy"))


def test_bench_perf_runs_on_cpu_and_writes_json(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["perf", "--pair", "resnet8:resnet8", "--method", "dkd", "--steps", "2",
                 "--warmup-steps", "1", "--classes", "4", "--per-class", "10",
                 "--backends", "torch,memory", "--workdir", str(tmp_path / "work"),
                 "--device", "cpu", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "naive" in table and "vs naive" in table and "cache float16" in table
    result = json.loads(out.read_text())
    rows = result["training"]
    naive = rows[0]
    assert naive["variant"].startswith("naive")
    for row in rows:  # each loop's speed as a ratio to the naive loop's, measured in this run
        assert row["ratio"] == pytest.approx(row["images_per_s"] / naive["images_per_s"])
    assert {"kdbench torch", "kdbench memory"} <= {r["variant"] for r in rows}
    assert all(r["images_per_s"] > 0 for r in rows)
    cached = next(r for r in rows if "cache" in r["variant"])
    assert cached["setup_s"] > 0  # the cache build is reported apart from the timed steps


def test_bench_perf_data_times_the_chosen_backends(tmp_path, capsys):
    out = tmp_path / "data.json"
    assert main(["perf", "--data", "--classes", "2", "--per-class", "8", "--backends",
                 "torch,memory", "--workdir", str(tmp_path / "work"), "--device", "cpu",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["data"]
    assert [r["backend"] for r in rows] == ["torch", "memory"]
    assert all(r["images_per_s"] > 0 for r in rows)
    for row in rows:  # each backend's speed as a ratio to the torch backend's
        assert row["ratio_to_torch"] == pytest.approx(row["images_per_s"] / rows[0]["images_per_s"])
