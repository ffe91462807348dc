"""The augmentations every array backend shares: stateless, counter-based, batched.

crop_flip (the CIFAR family) and rrc_flip (RandomResizedCrop + flip, the ImageNet family, here for
small prepared images) are pure functions of (seed, epoch, index).

`augment_params(seed, epoch, index)` is a pure function of its arguments, so the variant applied to
any sample is known afterwards (teacher-logit cache), resume needs no RNG state, and shards agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std of a dataset's train split (on [0, 1] pixels)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def tensors(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        return mean, torch.tensor(self.std, device=device).view(1, 3, 1, 1)


# mdistiller / RepDistiller's CIFAR-100 values (dataset/cifar100.py)
CIFAR100_NORMALIZATION = Normalization(CIFAR100_MEAN, CIFAR100_STD)
PAD = 4
CROP_POSITIONS = 2 * PAD + 1  # 9 offsets per axis: 9 x 9 x 2 = 162 variants per image

_MASK32 = 0xFFFFFFFF
_STREAM_AUGMENT = 0x2545F491
_STREAM_ORDER = 0x6A09E667
_STREAM_RRC = (0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C)  # area, ratio, x, y

# torchvision RandomResizedCrop's defaults
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    # lowbias32-style mixer on int64 holding 32-bit values; multipliers < 2**31 keep every
    # product below 2**63, so no signed overflow on any device.
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK32
    return x ^ (x >> 16)


def counter_hash(seed: int, epoch: int, index: torch.Tensor, stream: int) -> torch.Tensor:
    """A 32-bit hash of (stream, seed, epoch, index), elementwise over `index` (int64)."""
    index = torch.as_tensor(index, dtype=torch.int64)
    key = _hash32(torch.tensor(stream, dtype=torch.int64) ^ seed)
    key = _hash32(key ^ epoch)
    return _hash32(key ^ _hash32(index))


def augment_params(
    seed: int, epoch: int, index: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop offsets dx, dy in [0, 8] into the 4-padded image and a flip flag, per sample."""
    h = counter_hash(seed, epoch, torch.as_tensor(index), _STREAM_AUGMENT)
    dx = h % CROP_POSITIONS
    dy = (h // CROP_POSITIONS) % CROP_POSITIONS
    flip = ((h // (CROP_POSITIONS * CROP_POSITIONS)) % 2).bool()
    return dx, dy, flip


def epoch_order(seed: int, epoch: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The permutation of range(n) that epoch `epoch` visits, from the same counter scheme."""
    keys = counter_hash(seed, epoch, torch.arange(n, device=device), _STREAM_ORDER)
    return torch.argsort(keys, stable=True)


def normalize(
    images_uint8: torch.Tensor, stats: Normalization = CIFAR100_NORMALIZATION
) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float32 normalized with the dataset's mean/std."""
    mean, std = stats.tensors(images_uint8.device)
    return (images_uint8.float().div_(255.0) - mean) / std


def crop_flip(
    images_uint8: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Zero-pad by 4, crop 32x32 at (dx, dy), flip horizontally where asked; uint8 in, uint8 out.

    Padding the uint8 image with 0 before normalizing is what makes padded pixels (0 - mean) / std.
    """
    b, _, h, w = images_uint8.shape
    device = images_uint8.device
    padded = torch.nn.functional.pad(images_uint8, (PAD, PAD, PAD, PAD))
    dx, dy, flip = dx.to(device), dy.to(device), flip.to(device)
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    rows = dy.view(b, 1) + ar_h.view(1, h)
    cols = torch.where(flip.view(b, 1), dx.view(b, 1) + (w - 1) - ar_w, dx.view(b, 1) + ar_w)
    batch = torch.arange(b, device=device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def _uniform(seed: int, epoch: int, index: torch.Tensor, stream: int) -> torch.Tensor:
    """U[0, 1) in float64 from 32 hash bits."""
    return counter_hash(seed, epoch, index, stream).double() / 2.0**32


def rrc_boxes(
    seed: int, epoch: int, index: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """The RandomResizedCrop box (x0, y0, x1, y1 in pixels, float64) of each sample.

    torchvision draws area fraction ~ U(0.08, 1) and log aspect ratio ~ U(log 3/4, log 4/3), and
    retries up to 10 times while the box does not fit. A counter-based draw has one try, so the
    box's sides are clamped to the image instead; the offsets are uniform over the positions
    where it fits.
    """
    index = torch.as_tensor(index, dtype=torch.int64)
    u_area, u_ratio, u_x, u_y = (_uniform(seed, epoch, index, s) for s in _STREAM_RRC)
    area = (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * u_area) * height * width
    log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.sqrt(area * ratio).round().clamp(1, width)
    h = torch.sqrt(area / ratio).round().clamp(1, height)
    x0 = torch.floor(u_x * (width - w + 1))
    y0 = torch.floor(u_y * (height - h + 1))
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def resized_crop_flip(
    images_uint8: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int
) -> torch.Tensor:
    """Crop each image to its box, resize it to size x size, flip where asked; float on [0, 1]
    out. A box is never larger than the output, so the resize only enlarges: one bilinear sample
    per output pixel at its centre (torchvision's roi_align, aligned), as torchvision's bilinear
    resize samples, except that near a box edge it reads the pixels beyond the box."""
    b = images_uint8.shape[0]
    device = images_uint8.device
    rois = torch.cat(
        [torch.arange(b, device=device, dtype=torch.float32).view(b, 1),
         boxes.to(device=device, dtype=torch.float32)], dim=1
    )
    images = images_uint8.float().div_(255.0)
    from torchvision.ops import roi_align  # 1.2 s to import: only where a crop is resized

    out = roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    flip = flip.to(device).view(b, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def augment_batch(
    images_uint8: torch.Tensor,
    seed: int,
    epoch: int,
    indices: torch.Tensor,
    stats: Normalization = CIFAR100_NORMALIZATION,
    family: str = "crop_flip",
) -> torch.Tensor:
    """The train transform of every array backend (float32 out): pad, crop, flip (crop_flip) or
    resized crop, flip (rrc_flip); then normalize."""
    indices = indices.to(images_uint8.device)
    dx, dy, flip = augment_params(seed, epoch, indices)
    if family == "rrc_flip":
        _, _, h, w = images_uint8.shape
        crops = resized_crop_flip(images_uint8, rrc_boxes(seed, epoch, indices, h, w), flip, h)
        mean, std = stats.tensors(images_uint8.device)
        return (crops - mean) / std
    if family != "crop_flip":
        raise ValueError(f"augmentation family {family!r}: expected crop_flip or rrc_flip")
    return normalize(crop_flip(images_uint8, dx, dy, flip), stats)


def array_family(augment: bool | str) -> str | None:
    """A data spec's `augment` as served to arrays: True is crop_flip, False is none."""
    if augment is True:
        return "crop_flip"
    return augment or None
