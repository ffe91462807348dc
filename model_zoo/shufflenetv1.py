"""ShuffleNet V1 for 32 px, g = 3 (Zhang et al. 2018), as used by CRD: ShuffleV1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.layers import channel_shuffle
from model_zoo.registry import register_model


class ShuffleUnit(nn.Module):
    """1x1 group conv, shuffle, 3x3 depthwise, 1x1 group conv; stride 2 concatenates an avg-pool."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        mid = out_planes // 4
        # The 24-channel stem output is too narrow to split into groups.
        self.first_groups = 1 if in_planes == 24 else groups
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 2:
            self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        out = torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut
        return F.relu(out)


class ShuffleNetV1(nn.Module):
    def __init__(
        self,
        num_classes: int,
        widths: tuple[int, ...] = (240, 480, 960),
        blocks: tuple[int, ...] = (4, 8, 4),
        groups: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_planes = 24
        stages = []
        for width, count in zip(widths, blocks, strict=True):
            # The stride-2 unit's output is concatenated with its input, so it adds width - in.
            units = [ShuffleUnit(in_planes, width - in_planes, 2, groups)]
            units += [ShuffleUnit(width, width, 1, groups) for _ in range(count - 1)]
            stages.append(nn.Sequential(*units))
            in_planes = width
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # avg_pool2d(4) at 32 px


@register_model(name="ShuffleV1", resolution=32)
def shufflenet_v1(num_classes: int = 100) -> ShuffleNetV1:
    return ShuffleNetV1(num_classes)
