"""ImageNet-1k (ILSVRC 2012) as an image folder, `train/<wnid>/*` and `val/<wnid>/*`, served at
224 px only (the published ImageNet tables' size)."""

from __future__ import annotations

from bench.data.datasets.base import register_dataset
from bench.data.datasets.imagefolder import ImageFolderFormat


@register_dataset("imagenet")
class ImageNet(ImageFolderFormat):
    title, order, num_classes, resizable = "ImageNet", 40, 1000, False
