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


@pytest.mark.parametrize("name,builder", [("ResNet34", torchvision.models.resnet34),
                                          ("ResNet101", torchvision.models.resnet101),
                                          ("ResNet18", torchvision.models.resnet18),
                                          ("ResNet50", torchvision.models.resnet50)])  # fmt: skip
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
