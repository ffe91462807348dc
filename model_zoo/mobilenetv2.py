"""MobileNetV2 for 32 px at width 0.5, expansion 6 (CRD's "mobile_half")."""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.layers import init_fan_out
from model_zoo.registry import register_model

# (channels, repeats, first stride) per stage: Sandler et al. 2018 table 2, except that the
# 24-channel stage keeps stride 1 for 32 px input. The first stage expands by 1, the rest by T.
_STAGES = [(16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; the expand conv exists even for t = 1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, width: float = 0.5, expansion: int = 6) -> None:
        super().__init__()
        channels = int(32 * width)
        self.conv1 = _conv_bn_relu(3, channels, 3, stride=2)
        self.blocks = nn.ModuleList()
        for index, (c, repeats, stride) in enumerate(_STAGES):
            out_channels = int(c * width)
            t = 1 if index == 0 else expansion
            stage = []
            for i in range(repeats):
                stage.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, t))
                channels = out_channels
            self.blocks.append(nn.Sequential(*stage))
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, last, 1, stride=1)
        # global average: the reference's AvgPool2d(2, ceil_mode) over the 2x2 map of a 32 px input
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # AvgPool2d(2, ceil_mode) at 32 px
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))
        init_fan_out(self)
        nn.init.normal_(self.classifier[0].weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        x = self.avgpool(self.conv2(x))
        return self.classifier(torch.flatten(x, 1))


@register_model(name="MobileNetV2", resolution=32)
def mobilenetv2_half(num_classes: int = 100) -> MobileNetV2:
    return MobileNetV2(num_classes, width=0.5, expansion=6)
