"""Weight files: strict loading, one-line errors, refusal of files that would run code."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

import model_zoo
from model_zoo.pretrained import torchvision_weights


def _trained(name: str, num_classes: int = 100, seed: int = 0) -> torch.nn.Module:
    """A model whose weights and BatchNorm statistics differ from a fresh one."""
    torch.manual_seed(seed)
    model = model_zoo.create(name, num_classes=num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        model.train()(torch.randn(4, 3, 32, 32))  # moves the running statistics
    return model.eval()


def _logits(model: torch.nn.Module) -> torch.Tensor:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return model.eval()(x)


def _single_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_save_load_in_mdistiller_format_reproduces_logits(tmp_path: Path) -> None:
    source = _trained("resnet8")
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"model": source.state_dict(), "epoch": 240, "accuracy": torch.tensor(61.2)}, path)
    target = model_zoo.create("resnet8", num_classes=100)
    assert not torch.allclose(_logits(source), _logits(target))

    sha256 = model_zoo.load_checkpoint(target, path)

    assert torch.equal(_logits(source), _logits(target))
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model_zoo.sha256_file(path) == sha256


@pytest.mark.parametrize("layout", ["state_dict", "bare", "dataparallel"])
def test_other_checkpoint_layouts_load(tmp_path: Path, layout: str) -> None:
    source = _trained("wrn_16_1")
    state = source.state_dict()
    content = {
        "state_dict": {"state_dict": state},
        "bare": state,
        "dataparallel": {"model": {f"module.{k}": v for k, v in state.items()}},
    }[layout]
    torch.save(content, tmp_path / "w.pth")
    target = model_zoo.create("wrn_16_1")
    model_zoo.load_checkpoint(target, tmp_path / "w.pth")
    assert torch.equal(_logits(source), _logits(target))


def test_wrong_class_count_names_the_classifier_shapes(tmp_path: Path) -> None:
    torch.save(
        {"model": model_zoo.create("resnet8", num_classes=10).state_dict()}, tmp_path / "x.pth"
    )
    model = model_zoo.create("resnet8", num_classes=100)
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model, tmp_path / "x.pth")
    message = _single_line_error(excinfo)
    assert "does not fit resnet8" in message
    assert "fc.weight [10, 64] in file vs [100, 64] in model" in message


def test_wrong_architecture_names_missing_keys(tmp_path: Path) -> None:
    torch.save({"model": model_zoo.create("resnet8").state_dict()}, tmp_path / "r8.pth")
    model = model_zoo.create("resnet14")
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model, tmp_path / "r8.pth")
    message = _single_line_error(excinfo)
    assert "missing keys" in message
    assert "layer1.1.conv1.weight" in message


def test_wrong_family_names_unexpected_keys(tmp_path: Path) -> None:
    torch.save(model_zoo.create("wrn_16_1").state_dict(), tmp_path / "wrn.pth")
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model_zoo.create("resnet8"), tmp_path / "wrn.pth")
    message = _single_line_error(excinfo)
    assert "unexpected keys" in message and "block1.layer.0" in message
    assert len(message) < 1000


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model_zoo.create("resnet8"), tmp_path / "absent.pth")
    assert "absent.pth not found" in _single_line_error(excinfo)


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all\n" * 10)
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model_zoo.create("resnet8"), tmp_path / "junk.pth")
    assert "not a readable torch file" in _single_line_error(excinfo)


def test_file_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "best_acc": 71.0}, tmp_path / "meta.pth")
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model_zoo.create("resnet8"), tmp_path / "meta.pth")
    assert "holds no state_dict" in _single_line_error(excinfo)


class _WritesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, "w"): harmless, but it is code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save(
        {
            "model": model_zoo.create("resnet8").state_dict(),
            "x": _WritesMarkerWhenUnpickled(marker),
        },
        path,
    )
    assert not marker.exists()
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_checkpoint(model_zoo.create("resnet8"), path)
    message = _single_line_error(excinfo)
    assert "refused as unsafe" in message
    assert not marker.exists()


def test_load_pretrained_from_a_local_file(tmp_path: Path) -> None:
    source = _trained("resnet8")
    torch.save({"model": source.state_dict()}, tmp_path / "t.pth")
    target = model_zoo.create("resnet8")
    sha256 = model_zoo.load_pretrained("resnet8", target, str(tmp_path / "t.pth"))
    assert sha256 == model_zoo.sha256_file(tmp_path / "t.pth")
    assert torch.equal(_logits(source), _logits(target))


@pytest.mark.parametrize("name", ["resnet8", "timm:resnet18"])
def test_load_pretrained_without_file_needs_builtin_weights(name: str) -> None:
    with pytest.raises(model_zoo.CheckpointError, match="pass a weights file"):
        model_zoo.load_pretrained(name, torch.nn.Linear(1, 1), None)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_teachers_use_v1_weights_not_default(arch: str) -> None:
    from torchvision.models import get_model_weights

    weights = torchvision_weights(f"torchvision:{arch}")
    assert weights.name == "IMAGENET1K_V1"
    if arch == "resnet50":  # the only one whose DEFAULT differs (V2, 80.86 top-1)
        assert weights is not get_model_weights(arch).DEFAULT
        assert weights.url.endswith("/resnet50-0676ba61.pth")


def _no_download(*args, **kwargs):
    raise URLError("network disabled in tests")


def test_torchvision_pretrained_uses_the_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    source = model_zoo.create("torchvision:resnet18", num_classes=1000)
    torch.save(source.state_dict(), cached)
    target = model_zoo.create("torchvision:resnet18", num_classes=1000)

    sha256 = model_zoo.load_pretrained("torchvision:resnet18", target, None)

    assert sha256 == model_zoo.sha256_file(cached)
    assert all(
        torch.equal(a, b) for a, b in zip(source.parameters(), target.parameters(), strict=True)
    )


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    model = model_zoo.create("torchvision:resnet34")
    with pytest.raises(model_zoo.CheckpointError) as excinfo:
        model_zoo.load_pretrained("torchvision:resnet34", model, None)
    assert "could not download" in _single_line_error(excinfo)
