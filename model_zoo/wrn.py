"""Wide ResNets (Zagoruyko & Komodakis 2016) with pre-activation blocks: wrn_16_1 ... wrn_40_2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.layers import init_fan_out
from model_zoo.registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3; a 1x1 conv shortcut (no BN) when channels change."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        # Name kept from the reference code so its checkpoints load.
        self.convShortcut: nn.Conv2d | None = None
        if in_planes != planes:
            self.convShortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(act)))
        out = self.conv2(out)
        # With a projection the shortcut sees the pre-activated input, otherwise the raw one.
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + out


class _Group(nn.Module):
    """Holds its blocks under `.layer` so parameter names match the reference checkpoints."""

    def __init__(self, blocks: int, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        layers = [PreActBlock(in_planes, planes, stride)]
        layers += [PreActBlock(planes, planes, 1) for _ in range(blocks - 1)]
        self.layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.block1 = _Group(blocks, 16, widths[0], stride=1)
        self.block2 = _Group(blocks, widths[0], widths[1], stride=2)
        self.block3 = _Group(blocks, widths[1], widths[2], stride=2)
        self.bn1 = nn.BatchNorm2d(widths[2])
        self.fc = nn.Linear(widths[2], num_classes)
        init_fan_out(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = F.adaptive_avg_pool2d(F.relu(self.bn1(x)), 1)  # avg_pool2d(8) at 32 px
        return self.fc(torch.flatten(x, 1))


@register_model(resolution=32)
def wrn_16_1(num_classes: int = 100) -> WideResNet:
    return WideResNet(16, 1, num_classes)


@register_model(resolution=32)
def wrn_16_2(num_classes: int = 100) -> WideResNet:
    return WideResNet(16, 2, num_classes)


@register_model(resolution=32)
def wrn_40_1(num_classes: int = 100) -> WideResNet:
    return WideResNet(40, 1, num_classes)


@register_model(resolution=32)
def wrn_40_2(num_classes: int = 100) -> WideResNet:
    return WideResNet(40, 2, num_classes)
