"""The plain convnet with BatchNorm, loaded through $KDBENCH_PLUGINS by the DDP tests: its runs on
N ranks normalize batch/N images per layer, so they are another experiment than one process's."""

from torch import nn

from model_zoo import register_model


@register_model
def bnnet_test(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
