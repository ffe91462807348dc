"""Models added for CIFAR-10 and Tiny-ImageNet: the CIFAR-stem ResNet34/101 of kd-capacity-gap
(torchvision's ResNets with a 3x3 stride-1 stem and no max-pool) and mdistiller's Tiny-ImageNet
MobileNetV2, whose checkpoints must load as they are."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torchvision
from torch import nn

import model_zoo

# sha256 of json.dumps([(key, shape), ...]) of the state_dict of mdistiller's
# mobilenetv2_tinyimagenet(num_classes=200) (mdistiller/models/cifar/mv2_tinyimagenet.py, run once
# outside the project)
MDISTILLER_MV2_TINY_KEYS = "1d39cc8a6b043ce2"


def test_tiny_imagenet_mobilenetv2_has_mdistillers_state_dict_and_takes_64px():
    model = model_zoo.create("mobilenetv2_tinyimagenet", num_classes=200)
    keys = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert len(keys) == 373
    assert hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16] == MDISTILLER_MV2_TINY_KEYS
    torch.manual_seed(0)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def _golden_state(model):
    """Deterministic weights (unit BatchNorm, convolutions ~ N(0, 1/fan_in)) and input."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("running_mean") or (key.endswith("bias") and value.dim() == 1
                                            and "conv" not in key and "pre.0" not in key):
            state[key] = torch.zeros_like(value)
        elif key.endswith("running_var"):
            state[key] = torch.ones_like(value)
        elif key.endswith("num_batches_tracked"):
            state[key] = value
        elif value.dim() == 1:
            state[key] = torch.ones_like(value)
        else:
            state[key] = torch.randn(value.shape, generator=g) / value[0].numel() ** 0.5
    return state, torch.randn(2, 3, 64, 64, generator=g)


# mdistiller's mobilenetv2_tinyimagenet in eval mode with `_golden_state`: logits[:, :3], run
# once outside the project
MDISTILLER_MV2_TINY_LOGITS = [[3.524606466293335, -0.6946373581886292, 0.6848092675209045],
                              [3.520963430404663, -0.6922838687896729, 0.6850319504737854]]


def test_tiny_imagenet_mobilenetv2_computes_what_mdistillers_does():
    model = model_zoo.create("mobilenetv2_tinyimagenet", num_classes=200).eval()
    state, x = _golden_state(model)
    model.load_state_dict(state)
    with torch.no_grad():
        logits = model(x)[:, :3]
    assert torch.allclose(logits, torch.tensor(MDISTILLER_MV2_TINY_LOGITS), atol=1e-4)


TORCHVISION_TWINS = {"ResNet34": torchvision.models.resnet34,
                     "ResNet101": torchvision.models.resnet101,
                     "ResNet18": torchvision.models.resnet18,
                     "ResNet50": torchvision.models.resnet50}


@pytest.mark.parametrize("name,builder", sorted(TORCHVISION_TWINS.items()))
def test_cifar_stem_resnets_are_torchvisions_with_a_small_stem(name, builder):
    theirs = builder(num_classes=10)
    theirs.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    theirs.maxpool = nn.Identity()
    ours = model_zoo.create(name, num_classes=10)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.state_dict().values(), strict=True)))
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)
