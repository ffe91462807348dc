"""torchvision's ImageNet ResNets: torchvision:resnet18, torchvision:resnet34, torchvision:resnet50.

`pretrained` names the torchvision weights `load_pretrained` fetches. IMAGENET1K_V1, never
DEFAULT: DEFAULT is V2 (ResNet50 80.86 top-1, newer recipe), which inflates the teacher against
the published KD setting (mdistiller used the V1 files, ResNet50 76.13).
"""

from __future__ import annotations

from torch import nn

from model_zoo.registry import register_model


def _torchvision(arch: str, num_classes: int) -> nn.Module:
    import torchvision  # imported here so `import model_zoo` stays cheap

    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)


@register_model(name="torchvision:resnet18", resolution=224, pretrained="IMAGENET1K_V1")
def resnet18(num_classes: int = 1000) -> nn.Module:
    return _torchvision("resnet18", num_classes)


@register_model(name="torchvision:resnet34", resolution=224, pretrained="IMAGENET1K_V1")
def resnet34(num_classes: int = 1000) -> nn.Module:
    return _torchvision("resnet34", num_classes)


@register_model(name="torchvision:resnet50", resolution=224, pretrained="IMAGENET1K_V1")
def resnet50(num_classes: int = 1000) -> nn.Module:
    return _torchvision("resnet50", num_classes)
