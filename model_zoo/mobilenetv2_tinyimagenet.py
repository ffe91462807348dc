"""The MobileNetV2 student of mdistiller's Tiny-ImageNet experiments (DOT, Zhao et al. ICCV 2023):
width 1, a 1x1 stem padded by 1, biased convolutions, ReLU6, a 1x1 convolution as classifier.

Module names follow mdistiller's mdistiller/models/cifar/mv2_tinyimagenet.py, so its checkpoints
load as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.registry import register_model

# (out channels, repeats, first stride, expansion) after the stem
_STAGES = [(16, 1, 1, 1), (24, 2, 2, 6), (32, 3, 2, 6), (64, 4, 2, 6), (96, 3, 1, 6),
           (160, 3, 1, 6), (320, 1, 1, 6)]


class LinearBottleNeck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        return out + x if self.use_residual else out


class MobileNetV2Tiny(nn.Module):
    def __init__(self, num_classes: int = 200) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 32, 1, padding=1), nn.BatchNorm2d(32),
                                 nn.ReLU6(inplace=True))
        in_channels = 32
        for number, (out_channels, repeats, stride, expansion) in enumerate(_STAGES, start=1):
            blocks = []
            for i in range(repeats):
                blocks.append(LinearBottleNeck(in_channels, out_channels, stride if i == 0 else 1,
                                               expansion))
                in_channels = out_channels
            # single-block stages are the block itself in mdistiller's module tree
            setattr(self, f"stage{number}", blocks[0] if repeats == 1 else nn.Sequential(*blocks))
        self.conv1 = nn.Sequential(nn.Conv2d(320, 1280, 1), nn.BatchNorm2d(1280),
                                   nn.ReLU6(inplace=True))
        self.conv2 = nn.Conv2d(1280, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        for number in range(1, len(_STAGES) + 1):
            x = getattr(self, f"stage{number}")(x)
        x = nn.functional.adaptive_avg_pool2d(self.conv1(x), 1)
        return torch.flatten(self.conv2(x), 1)


@register_model(name="mobilenetv2_tinyimagenet", resolution=64)
def mobilenetv2_tinyimagenet(num_classes: int = 200) -> MobileNetV2Tiny:
    return MobileNetV2Tiny(num_classes)
