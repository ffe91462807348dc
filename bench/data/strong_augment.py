"""The strong view of two-view methods (MLKD): pad-crop-flip, two RandAugment operations and a
Cutout, counter-based like every other augmentation here, so it is reproducible, resumable and the
same on every backend.

The operations, their magnitude ranges, the number of operations (2, drawn with replacement) and
the Cutout (side up to half the image, grey (125, 123, 114)) are those of MLKD's released code
(Jin-Ying/Multi-Level-Logit-Distillation, mdistiller/dataset/cifar100.py: RandAugment(2, 10), the
FixMatch list). The authors apply them with PIL; torchvision's tensor operations used here give the
same pixels within one grey level, except shears (nearest-neighbour rounding differs on ~9% of
pixels).
"""

from __future__ import annotations

import math

import torch

from bench.data.augment import (
    CROP_POSITIONS,
    Normalization,
    augment_batch,
    counter_hash,
    crop_flip,
    normalize,
)

_STREAM_CROP = 0x1F83D9AB
class _Functional:
    """torchvision's v2 functional ops, imported on first use: importing torchvision costs about
    1.3 s, and most processes (the spec, the reports) never make a strong view."""

    def __getattr__(self, name: str):
        import torchvision.transforms.v2.functional as functional

        op = getattr(functional, name)
        setattr(self, name, op)  # found once: the per-image path never comes back here
        return op


F = _Functional()

_STREAM_OPS = (0x5BE0CD19, 0x428A2F98)  # which operation, first and second
_STREAM_VALUES = (0x71374491, 0xB5C0FBCF)  # its magnitude, first and second
_STREAM_CUTOUT = (0xE9B5DBA5, 0x3956C25B, 0x59F111F1)  # size, x, y
CUTOUT_FILL = (125, 123, 114)
CUTOUT_MAX = 0.5  # of the image side


def _shear_x(img: torch.Tensor, v: float) -> torch.Tensor:
    # PIL's affine (1, v, 0, 0, 1, 0) about the top-left corner
    return F.affine(img, angle=0.0, translate=[0.0, 0.0], scale=1.0,
                    shear=[math.degrees(math.atan(v)), 0.0], center=[0.0, 0.0])


def _shear_y(img: torch.Tensor, v: float) -> torch.Tensor:
    return F.affine(img, angle=0.0, translate=[0.0, 0.0], scale=1.0,
                    shear=[0.0, math.degrees(math.atan(v))], center=[0.0, 0.0])


def _translate(img: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    return F.affine(img, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0])


def _solarize(img: torch.Tensor, v: float) -> torch.Tensor:
    return torch.where(img >= v, 255 - img, img)  # PIL: a pixel at or above v is inverted


# (operation, low, high): the magnitude is drawn uniformly in [low, high]
OPERATIONS = (
    (lambda img, v: F.autocontrast(img), 0.0, 1.0),
    (lambda img, v: F.adjust_brightness(img, v), 0.05, 0.95),
    (lambda img, v: F.adjust_saturation(img, v), 0.05, 0.95),  # PIL's Color
    (lambda img, v: F.adjust_contrast(img, v), 0.05, 0.95),
    (lambda img, v: F.equalize(img), 0.0, 1.0),
    (lambda img, v: img, 0.0, 1.0),
    (lambda img, v: F.posterize(img, max(1, int(v))), 4.0, 8.0),
    (lambda img, v: F.rotate(img, v), -30.0, 30.0),
    (lambda img, v: F.adjust_sharpness(img, v), 0.05, 0.95),
    (_shear_x, -0.3, 0.3),
    (_shear_y, -0.3, 0.3),
    (_solarize, 0.0, 256.0),
    (lambda img, v: _translate(img, -v * img.shape[-1], 0.0), -0.3, 0.3),
    (lambda img, v: _translate(img, 0.0, -v * img.shape[-2]), -0.3, 0.3),
)


def _uniform(seed: int, epoch: int, index: torch.Tensor, stream: int) -> list[float]:
    return (counter_hash(seed, epoch, index, stream).double() / 2.0**32).tolist()


def _cutout(img: torch.Tensor, size: float, u_x: float, u_y: float,
            fill: torch.Tensor) -> torch.Tensor:
    """A grey square of side `size` px centred at a uniform point, clipped to the image; its far
    edges are inclusive, as PIL's rectangle draws them."""
    if size <= 0:
        return img
    h, w = img.shape[-2:]
    x0 = int(max(0.0, u_x * w - size / 2))
    y0 = int(max(0.0, u_y * h - size / 2))
    x1 = min(w - 1, math.floor(x0 + size))
    y1 = min(h - 1, math.floor(y0 + size))
    img = img.clone()
    img[:, y0 : y1 + 1, x0 : x1 + 1] = fill
    return img


def strong_view(
    images_uint8: torch.Tensor,
    seed: int,
    epoch: int,
    indices: torch.Tensor,
    stats: Normalization,
) -> torch.Tensor:
    """The strong view of each image (float32, normalized): its own pad-crop-flip, two operations,
    a Cutout. A pure function of (seed, epoch, index), like the weak view."""
    indices = indices.to(images_uint8.device)
    h = counter_hash(seed, epoch, indices, _STREAM_CROP)
    dx, dy = h % CROP_POSITIONS, (h // CROP_POSITIONS) % CROP_POSITIONS
    flip = ((h // (CROP_POSITIONS * CROP_POSITIONS)) % 2).bool()
    cropped = crop_flip(images_uint8, dx, dy, flip)
    # the per-image choices are read on the host: hashed there from one copy of the indices
    # (integer arithmetic, the same on every device), not read back from the device one by one
    keys = indices.cpu()
    ops = [(counter_hash(seed, epoch, keys, s) % len(OPERATIONS)).tolist() for s in _STREAM_OPS]
    values = [_uniform(seed, epoch, keys, s) for s in _STREAM_VALUES]
    cut_size, cut_x, cut_y = (_uniform(seed, epoch, keys, s) for s in _STREAM_CUTOUT)
    fill = torch.tensor(CUTOUT_FILL, dtype=cropped.dtype, device=cropped.device).view(3, 1, 1)
    out = []
    for i, img in enumerate(cropped):
        for which, value in zip(ops, values, strict=True):
            operation, low, high = OPERATIONS[which[i]]
            img = operation(img, low + (high - low) * value[i])
        side = cut_size[i] * CUTOUT_MAX * img.shape[-1]
        out.append(_cutout(img, side, cut_x[i], cut_y[i], fill))
    return normalize(torch.stack(out), stats)


def train_batch(
    images_uint8: torch.Tensor,
    seed: int,
    epoch: int,
    indices: torch.Tensor,
    stats: Normalization,
    family: str,
    views: int = 1,
) -> torch.Tensor:
    """The train batch of an array backend: the weak view [B], or weak then strong [2B]."""
    weak = augment_batch(images_uint8, seed, epoch, indices, stats, family)
    if views == 1:
        return weak
    return torch.cat([weak, strong_view(images_uint8, seed, epoch, indices, stats)])
