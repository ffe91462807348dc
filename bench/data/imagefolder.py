"""ImageNet and any image folder: `<root>/train/<class>/*` and `<root>/val/<class>/*`.

Train: RandomResizedCrop 224 + horizontal flip; test: Resize 256 + CenterCrop 224; both normalized
with the ImageNet mean/std. The crop and the flip are drawn from the same counter scheme as the
CIFAR augmentation (a pure function of seed, epoch and file index), so the torch backend is
deterministic across workers and resumes. The content hash is the sorted file list with sizes:
cheap for ImageNet's 1.3M files, and a changed, added or removed file changes it.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.augment import augment_params, counter_hash
from bench.errors import DataError, SpecError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESOLUTION = 224
RESIZE = 256
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
SPLIT_FOLDERS = {"train": "train", "test": "val"}
_STREAM_CROP = 0x3C6EF372


def image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def check_folder(root: Path) -> Path:
    """`root` if it holds train/ and val/ class folders, else a one-line DataError."""
    root = Path(root).expanduser()
    for split in SPLIT_FOLDERS.values():
        if not (root / split).is_dir():
            raise DataError(
                f"image folder not found: {root / split} (expected {root}/train/<class>/* and "
                f"{root}/val/<class>/*; set data.root)"
            )
    return root


def folder_hash(root: Path) -> str:
    """sha256 of the sorted (split/relative path, size) list of the image files."""
    root = check_folder(root)
    extensions = image_extensions()
    digest = hashlib.sha256()
    for split in sorted(SPLIT_FOLDERS.values()):
        base = root / split
        entries = []
        for folder, dirs, files in os.walk(base, followlinks=True):
            dirs.sort()
            for name in files:
                if name.lower().endswith(extensions):
                    path = Path(folder) / name
                    entries.append((path.relative_to(root).as_posix(), path.stat().st_size))
        for rel, size in sorted(entries):
            digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()[:16]


def read_folder(root: Path, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of every image of `split` ('train' or 'test'), in torchvision's order."""
    from torchvision.datasets.folder import find_classes, make_dataset

    base = check_folder(root) / SPLIT_FOLDERS[split]
    try:
        classes, class_to_idx = find_classes(str(base))
        samples = make_dataset(str(base), class_to_idx, extensions=image_extensions())
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"image folder {base}: {exc}".replace("\n", " ")) from None
    return samples, classes


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


class _FolderSamples(Dataset):
    """Items keyed by (position, epoch): (image float [3,224,224], label, file index)."""

    def __init__(self, samples, positions, seed: int, train: bool, augment: bool):
        self.samples, self.positions = samples, positions
        self.seed, self.train, self.augment = seed, train, augment and train

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, key: tuple[int, int]):
        import torchvision.transforms.functional as F
        from PIL import Image

        position, epoch = key
        index = int(self.positions[position])
        path, label = self.samples[index]
        with Image.open(path) as handle:
            image = handle.convert("RGB")
        if self.augment:
            top, left, h, w = resized_crop_params(
                self.seed, epoch, index, image.height, image.width
            )
            image = F.resized_crop(image, top, left, h, w, [RESOLUTION, RESOLUTION], antialias=True)
            pixels = F.pil_to_tensor(image).unsqueeze(0)
            pixels = shared_flip(pixels, self.seed, epoch, torch.tensor([index]))
        else:
            image = F.center_crop(F.resize(image, RESIZE, antialias=True), RESOLUTION)
            pixels = F.pil_to_tensor(image).unsqueeze(0)
        reported = index if self.train else position
        return imagenet_normalize(pixels)[0], label, reported


def make_imagefolder_loaders(
    data, *, batch_size: int, test_batch_size: int, seed: int, device, workdir: Path
):
    """Loaders of an ImageNet-layout folder for the `torch` or `ffcv` backend."""
    from bench.data import cifar
    from bench.data.datasets import content_hash, default_root
    from bench.data.loaders import Loaders

    if data.backend == "gpu":
        raise SpecError(f"data.backend: 'gpu' holds CIFAR-size data only, not {data.dataset}")
    root = check_folder(default_root(data, workdir))
    train_samples, classes = read_folder(root, "train")
    test_samples, test_classes = read_folder(root, "test")
    if test_classes != classes:
        raise DataError(
            f"image folder {root}: val/ has classes {len(test_classes)} that differ from "
            f"train/ ({len(classes)}); expected the same class folders"
        )
    digest = content_hash(root, data.dataset)
    train_keep = cifar.first_per_class(
        np.array([y for _, y in train_samples], dtype=np.int64), data.subset_per_class
    )
    test_keep = cifar.first_per_class(
        np.array([y for _, y in test_samples], dtype=np.int64), data.test_subset_per_class
    )
    if data.backend == "ffcv":
        from bench.data.ffcv_backend import make_ffcv_imagefolder_loaders

        train, test = make_ffcv_imagefolder_loaders(
            root,
            digest,
            train_keep,
            test_keep,
            workdir=workdir,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            seed=seed,
            augment=data.augment,
            num_workers=data.num_workers,
            device=device,
        )
    else:
        from bench.data.torch_backend import SampleLoader

        train, test = (
            SampleLoader(
                _FolderSamples(samples, keep, seed, train=is_train, augment=data.augment),
                batch_size=batch,
                seed=seed,
                train=is_train,
                num_workers=data.num_workers,
                device=device,
            )
            for samples, keep, batch, is_train in (
                (train_samples, train_keep, batch_size, True),
                (test_samples, test_keep, test_batch_size, False),
            )
        )
    return Loaders(train, test, len(classes), digest, seed)
