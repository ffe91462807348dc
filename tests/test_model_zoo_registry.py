"""Registry behaviour, ImageNet models (torchvision, timm, imagenet:mobilenetv1) and describe."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

import model_zoo
from model_zoo import registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm must never reach the network in tests

CIFAR = ["MobileNetV2", "ResNet18", "ResNet50", "ShuffleV1", "ShuffleV2", "resnet8", "wrn_40_2"]
IMAGENET = [
    "imagenet:mobilenetv1",
    "torchvision:resnet18",
    "torchvision:resnet34",
    "torchvision:resnet50",
]


def test_list_models_is_sorted_and_filters_by_pattern() -> None:
    names = model_zoo.list_models()
    assert names == sorted(names)
    assert set(CIFAR + IMAGENET) <= set(names)
    assert model_zoo.list_models("wrn*") == ["wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]
    assert model_zoo.list_models("torchvision:*") == IMAGENET[1:]
    assert "timm:resnet18" in model_zoo.list_models("timm:resnet1*")


@pytest.mark.parametrize(
    ("name", "resolution"),
    [(n, 32) for n in CIFAR] + [(n, 224) for n in IMAGENET] + [("timm:resnet18", 224)],
)
def test_input_resolution(name: str, resolution: int) -> None:
    assert model_zoo.input_resolution(name) == resolution


def test_input_resolution_follows_timm_declared_size() -> None:
    assert model_zoo.input_resolution("timm:vit_base_patch16_384") == 384


@pytest.mark.parametrize("bad", ["resnet50", "nonexistent", "imagenet:", "torchvision:vgg16"])
def test_unknown_model_is_a_one_line_error_listing_valid_names(bad: str) -> None:
    for call in (model_zoo.create, model_zoo.input_resolution):
        with pytest.raises(model_zoo.ModelError) as excinfo:
            call(bad)
        message = str(excinfo.value)
        assert "\n" not in message
        assert f"unknown model '{bad}'" in message
        assert "resnet32x4" in message and "torchvision:resnet50" in message
        assert "timm:" in message and "python -m bench list models" in message
    assert issubclass(model_zoo.ModelError, ValueError)


def test_wrong_case_suggests_the_cifar_and_imagenet_model() -> None:
    with pytest.raises(
        model_zoo.ModelError, match="did you mean 'ResNet50' or 'torchvision:resnet50'"
    ):
        model_zoo.create("resnet50")


def test_unknown_timm_model_suggests_close_names() -> None:
    with pytest.raises(model_zoo.ModelError, match=r"timm:resnet18x.*'timm:resnet18'"):
        model_zoo.create("timm:resnet18x")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 20}, "model 'resnet8' has no option 'depth'"),
        ({"pretrained": True}, "load_pretrained"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_bad_options_are_model_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(model_zoo.ModelError, match=match):
        model_zoo.create("resnet8", **kwargs)


def test_register_model_adds_a_discoverable_entry(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @model_zoo.register_model(resolution=64)
    def tiny_test_net(num_classes: int = 100) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    assert model_zoo.list_models("tiny_*") == ["tiny_test_net"]
    assert model_zoo.input_resolution("tiny_test_net") == 64
    assert model_zoo.create("tiny_test_net", num_classes=3)(torch.zeros(2, 3, 4, 4)).shape == (2, 3)
    with pytest.raises(model_zoo.ModelError, match="registered twice"):
        model_zoo.register_model(tiny_test_net)


def test_model_zoo_imports_nothing_from_the_harness() -> None:
    package = Path(model_zoo.__file__).parent
    for file in sorted(package.glob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & {"bench", "methods"}, f"{file.name} imports {roots}"


def test_imagenet_mobilenetv1_is_the_classic_4_2m_network() -> None:
    model = model_zoo.create("imagenet:mobilenetv1", num_classes=1000).eval()
    params = sum(p.numel() for p in model.parameters())
    assert params == 4_231_976
    assert 4.1e6 <= params <= 4.3e6
    keys = model.state_dict()
    assert list(keys["model.0.0.weight"].shape) == [32, 3, 3, 3]
    assert list(keys["model.13.3.weight"].shape) == [1024, 1024, 1, 1]
    assert list(keys["fc.weight"].shape) == [1000, 1024]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_imagenet_mobilenetv1_cost_matches_the_paper() -> None:
    # Howard et al. 2017, table 8: 1.0 MobileNet-224 has 569M mult-adds and 4.2M parameters.
    info = model_zoo.describe("imagenet:mobilenetv1", num_classes=1000)
    assert info["macs"] == pytest.approx(569e6, rel=0.005)
    assert info["flops"] == 2 * info["macs"]
    assert info["resolution"] == 224


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_resnets_load_their_own_state_dict(arch: str) -> None:
    import torchvision

    model = model_zoo.create(f"torchvision:{arch}", num_classes=1000)
    reference = getattr(torchvision.models, arch)(weights=None)
    model.load_state_dict(reference.state_dict(), strict=True)
    assert isinstance(model, torchvision.models.ResNet)


def test_torchvision_resnet_with_other_class_count() -> None:
    model = model_zoo.create("torchvision:resnet18", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_timm_model_takes_num_classes_and_options() -> None:
    model = model_zoo.create("timm:resnet18", num_classes=10, drop_rate=0.1).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert model.model_zoo_name == "timm:resnet18"
