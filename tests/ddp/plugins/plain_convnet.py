"""A model without BatchNorm, loaded through $KDBENCH_PLUGINS by the DDP tests: with no batch
statistics, DDP at global batch 2B must reach the single process's weights at batch 2B."""

from torch import nn

from model_zoo import register_model


@register_model
def plainnet_test(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )
