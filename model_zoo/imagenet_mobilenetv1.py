"""imagenet:mobilenetv1, the classic 1.0x MobileNetV1 (Howard et al. 2017) of the KD papers.

Not in torchvision. Parameter names (`model.<i>.<j>`, `fc`) follow mdistiller's version.
"""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.registry import register_model

# (output channels, stride) of each depthwise-separable block after the 32-channel stem.
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers = [_conv_bn_relu(3, 32, 2)]
        channels = 32
        for out_channels, stride in _BLOCKS:
            layers.append(_separable(channels, out_channels, stride))
            channels = out_channels
        self.model = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.model(x)), 1))


@register_model(name="imagenet:mobilenetv1", resolution=224)
def mobilenetv1(num_classes: int = 1000) -> MobileNetV1:
    return MobileNetV1(num_classes)
