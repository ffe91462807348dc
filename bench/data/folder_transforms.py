"""ImageNet-family transforms: RandomResizedCrop parameters drawn from the shared counter, the
shared flip, and normalization with the ImageNet mean/std (train: RandomResizedCrop 224 + flip;
test: Resize 256 + CenterCrop 224)."""

from __future__ import annotations

import math
import random

import torch

from bench.data.augment import augment_params, counter_hash

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESOLUTION = 224
RESIZE = 256
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
_STREAM_CROP = 0x3C6EF372


def imagenet_normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float32 normalized with the ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images_uint8.device).view(1, 3, 1, 1)
    return (images_uint8.float().div_(255.0) - mean) / std


def shared_flip(images: torch.Tensor, seed: int, epoch: int, indices: torch.Tensor):
    """Flip horizontally the samples whose `augment_params` flip bit is set."""
    _, _, flip = augment_params(seed, epoch, indices.to(images.device))
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def resized_crop_params(
    seed: int, epoch: int, index: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of RandomResizedCrop(scale 0.08-1, ratio 3/4-4/3), drawn from a counter.

    torchvision's algorithm (10 tries, then the central crop of the clamped ratio), with its
    random numbers drawn from a generator seeded by hash(seed, epoch, index).
    """
    rng = random.Random(int(counter_hash(seed, epoch, torch.tensor(index), _STREAM_CROP)))
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif in_ratio > CROP_RATIO[1]:
        h, w = height, int(round(height * CROP_RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w
