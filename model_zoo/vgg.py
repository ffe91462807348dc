"""VGG with BatchNorm for 32 px (Simonyan & Zisserman 2015, CRD's variant): vgg8 ... vgg19."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.layers import init_fan_out
from model_zoo.registry import register_model

_CONFIGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [
        [64, 64],
        [128, 128],
        [256, 256, 256, 256],
        [512, 512, 512, 512],
        [512, 512, 512, 512],
    ],
}


def _block(in_channels: int, widths: list[int]) -> nn.Sequential:
    """conv3x3 (with bias) + BN + ReLU per width, without the last ReLU: forward applies it."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    def __init__(self, config: list[list[int]], num_classes: int) -> None:
        super().__init__()
        ins = [3] + [widths[-1] for widths in config[:-1]]
        self.block0, self.block1, self.block2, self.block3, self.block4 = (
            _block(c, widths) for c, widths in zip(ins, config, strict=True)
        )
        self.pool0, self.pool1, self.pool2, self.pool3 = (nn.MaxPool2d(2, 2) for _ in range(4))
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(config[-1][-1], num_classes)
        init_fan_out(self)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2]
        x = self.pool0(F.relu(self.block0(x)))
        x = self.pool1(F.relu(self.block1(x)))
        x = self.pool2(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if size == 64:  # at 32 px the map is 4x4 here and the reference skips this pool
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        return self.classifier(torch.flatten(self.pool4(x), 1))


@register_model(resolution=32)
def vgg8(num_classes: int = 100) -> VGG:
    return VGG(_CONFIGS["vgg8"], num_classes)


@register_model(resolution=32)
def vgg11(num_classes: int = 100) -> VGG:
    return VGG(_CONFIGS["vgg11"], num_classes)


@register_model(resolution=32)
def vgg13(num_classes: int = 100) -> VGG:
    return VGG(_CONFIGS["vgg13"], num_classes)


@register_model(resolution=32)
def vgg16(num_classes: int = 100) -> VGG:
    return VGG(_CONFIGS["vgg16"], num_classes)


@register_model(resolution=32)
def vgg19(num_classes: int = 100) -> VGG:
    return VGG(_CONFIGS["vgg19"], num_classes)
