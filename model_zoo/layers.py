"""Small pieces shared by several CIFAR families: channel shuffle and weight initialisation."""

from __future__ import annotations

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, g*c, H, W] -> interleave the g groups channel by channel (ShuffleNet)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def init_fan_out(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions with zero bias, BatchNorm at identity.

    The CIFAR zoo's reference code initialises this way (its `normal_(0, sqrt(2 / (k*k*out)))`
    is the same distribution); matching it keeps from-scratch training comparable.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
