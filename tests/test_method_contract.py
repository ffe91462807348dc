"""The method contract holds end to end, proven with a test-only method loaded as a plugin
(tests/plugins/): it needs the teacher's classifier weights, learns a parameter and keeps state.
It trains, its parameter changes and is checkpointed, a resumed run equals an uninterrupted one
bitwise, and it is reported. This file never names it: the plugin folder is the only link."""

import sys
from pathlib import Path

import pytest
import torch

import methods
from bench.__main__ import main
from bench.store.trackers import FINISHED, MlflowTracker
from methods.registry import _METHODS
from tests.runner_helpers import runs_by_label, same_weights, weights_of, write_tiny

pytestmark = pytest.mark.slow

PLUGINS = Path(__file__).parent / "plugins"  # what $KDBENCH_PLUGINS would name


@pytest.fixture(scope="module")
def plugin_method():
    """The method the plugin folder adds; unregistered afterwards, so other tests see the
    methods of the package alone."""
    added = methods.load_plugins([PLUGINS])
    assert len(added) == 1, added
    yield added[0]
    module = methods.method_class(added[0]).__module__
    _METHODS.pop(added[0])
    sys.modules.pop(module)


def test_the_registry_declares_what_the_plugin_needs(plugin_method):
    needs = methods.needs(plugin_method)
    assert needs.teacher and needs.teacher_classifier and needs.learnable and needs.state
    method = methods.create(plugin_method, num_classes=4)
    assert [name for name, _ in method.named_parameters()] == ["log_temperature"]
    assert not methods.needs("kd").learnable and not methods.needs("ce").teacher


def _matrix(folder: Path, name: str) -> Path:
    return write_tiny(folder, methods=f"[{name}]")


def test_plugin_method_trains_checkpoints_and_resumes_bitwise(
    tmp_path, capsys, monkeypatch, plugin_method
):
    reference = tmp_path / "reference"
    matrix = _matrix(tmp_path, plugin_method)
    assert main(["run", "--matrix", str(matrix), "--workdir", str(reference)]) == 0
    ref_run = runs_by_label(reference)[("student", plugin_method, "0")]
    assert ref_run.status == FINISHED
    ref_weights = torch.load(reference / "weights" / f"{ref_run.tags['run_key']}.pt",
                             weights_only=True)
    learned = ref_weights["method"]["log_temperature"]
    assert learned.item() != pytest.approx(torch.tensor(4.0).log().item(), abs=1e-6)
    similarity = ref_weights["method"]["class_similarity"]
    assert similarity.shape == (4, 4)
    torch.testing.assert_close(similarity.sum(dim=1), torch.ones(4))

    workdir = tmp_path / "killed"
    monkeypatch.setenv("KDBENCH_FAULT", "enospc:3")  # stops with epoch 2's checkpoint kept
    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir)]) == 1
    monkeypatch.delenv("KDBENCH_FAULT")
    (checkpoint,) = (workdir / "checkpoints").glob("*.pt")
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 2
    assert state["method"]["log_temperature"].item() != pytest.approx(learned.item(), abs=0)
    param_ids = {i for group in state["optimizer"]["param_groups"] for i in group["params"]}
    student_params = len([k for k in state["model"] if "running" not in k and "num_batches"
                          not in k])
    assert len(param_ids) == student_params + 1  # the optimizer holds student ∪ method

    assert main(["run", "--matrix", str(matrix), "--workdir", str(workdir)]) == 0
    assert "resumed from the checkpoint of epoch 2" in capsys.readouterr().out
    run = runs_by_label(workdir)[("student", plugin_method, "0")]
    weights = torch.load(workdir / "weights" / f"{run.tags['run_key']}.pt", weights_only=True)
    assert torch.equal(weights["method"]["log_temperature"], learned)
    assert same_weights(weights_of(workdir, run), weights_of(reference, ref_run))
    tracker, ref_tracker = MlflowTracker(workdir), MlflowTracker(reference)
    for key in ("train/loss", "train/sim", "test/top1"):
        assert tracker.history(run.run_id, key) == ref_tracker.history(ref_run.run_id, key)

    out = tmp_path / "report"
    assert main(["report", "--matrix", str(matrix), "--workdir", str(workdir),
                 "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert plugin_method in text and f"{run.metrics['last_top1']:.2f} ± 0.00 (1)" in text
