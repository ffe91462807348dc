"""The CIFAR zoo matches the published models: parameter names, shapes, counts, cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import model_zoo

MANIFEST = json.loads(
    (Path(__file__).parent / "data" / "cifar_zoo_state_dict.json").read_text(encoding="utf-8")
)
CIFAR_NAMES = sorted(MANIFEST)


@pytest.fixture(scope="module", params=CIFAR_NAMES)
def cifar_model(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    return request.param, model_zoo.create(request.param, num_classes=100)


def test_every_manifest_model_is_registered() -> None:
    assert set(CIFAR_NAMES) <= set(model_zoo.list_models())


def test_every_cifar_model_of_the_zoo_is_checked_against_a_reference() -> None:
    """A 32 px model is held to mdistiller's state_dict manifest (here) or to torchvision's twin
    with a CIFAR stem (test_model_zoo_small_image_families): a new one needs one of them."""
    from tests.test_model_zoo_small_image_families import TORCHVISION_TWINS

    cifar = {name for name in model_zoo.list_models() if model_zoo.input_resolution(name) == 32}
    assert cifar - set(MANIFEST) - set(TORCHVISION_TWINS) == set()


def test_state_dict_keys_and_shapes_match_manifest(cifar_model) -> None:
    name, model = cifar_model
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    expected = MANIFEST[name]["state_dict"]
    assert sorted(set(expected) - set(shapes)) == [], "missing keys"
    assert sorted(set(shapes) - set(expected)) == [], "unexpected keys"
    wrong = {k: (shapes[k], expected[k]) for k in expected if shapes[k] != expected[k]}
    assert wrong == {}


def test_parameter_count_matches_manifest(cifar_model) -> None:
    name, model = cifar_model
    assert sum(p.numel() for p in model.parameters()) == MANIFEST[name]["params"]


def test_forward_backward_gives_logits_and_grads_everywhere(cifar_model) -> None:
    name, model = cifar_model
    model.train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = model(x)
    assert isinstance(logits, torch.Tensor), f"{name} must return logits only"
    assert logits.shape == (2, 100)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(logits, torch.tensor([3, 97])).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == [], "parameters not used by forward"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV2"])
def test_num_classes_sets_classifier_width(name: str) -> None:
    model = model_zoo.create(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


# Multiply-accumulates per 32x32 image as the KD literature reports them (CRD, ReviewKD, DIST
# tables); they pin down strides and pooling, which parameter shapes cannot.
PUBLISHED_MACS = {
    "resnet20": 41e6,
    "resnet56": 125e6,
    "resnet110": 253e6,
    "resnet8x4": 177e6,
    "resnet32x4": 1.08e9,
    "wrn_16_2": 101e6,
    "wrn_40_2": 0.33e9,
    "ShuffleV1": 38e6,
    "ShuffleV2": 45e6,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_match_published_cost(name: str) -> None:
    assert model_zoo.describe(name)["macs"] == pytest.approx(PUBLISHED_MACS[name], rel=0.02)


def test_describe_resnet8_counts_every_layer() -> None:
    # conv MACs = C_in * C_out * k * k * H_out * W_out, stages at 32, 16 and 8 px.
    macs = (
        3 * 16 * 9 * 32 * 32  # stem
        + 2 * 16 * 16 * 9 * 32 * 32  # layer1
        + (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32) * 16 * 16  # layer2 with 1x1 projection
        + (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64) * 8 * 8  # layer3 with 1x1 projection
        + 64 * 100  # fc
    )
    info = model_zoo.describe("resnet8")
    assert info == {
        "name": "resnet8",
        "resolution": 32,
        "params": MANIFEST["resnet8"]["params"],
        "flops": 2 * macs,
        "macs": macs,
    }
