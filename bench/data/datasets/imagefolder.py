"""ImageNet and any image folder: `<root>/train/<class>/*` and `<root>/val/<class>/*`.

The content hash is the sorted file list with sizes: cheap for ImageNet's 1.3M files, and a
changed, added or removed file changes it. Samples are keyed by (position, epoch) so the crop and
flip of `folder_transforms` are a pure function of seed, epoch and file index.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from bench.data.datasets.base import FOLDER, Dataset, register_dataset
from bench.data.datasets.cifar import first_per_class
from bench.data.folder_transforms import (
    RESIZE,
    RESOLUTION,
    imagenet_normalize,
    resized_crop_params,
    shared_flip,
)
from bench.errors import DataError

SPLIT_FOLDERS = {"train": "train", "test": "val"}


# torchvision and PIL are imported where used: importing torchvision costs ~1.5 s, and most
# processes (CIFAR runs, the CLI) never read an image folder.


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
                    size = path.stat().st_size
                    if size == 0:
                        raise DataError(f"image file is empty: {path}; remove or replace it")
                    entries.append((path.relative_to(root).as_posix(), size))
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
    if len(classes) < 2:  # a classifier needs two; say so before any data is prepared
        raise DataError(
            f"image folder {root}: {SPLIT_FOLDERS[split]}/ holds {len(classes)} class folder "
            f"({', '.join(classes)}); expected 2 or more, one folder per class"
        )
    return samples, classes


class FolderSamples(TorchDataset):
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


@dataclass(frozen=True)
class FolderSplits:
    """The samples of train/ and val/ and the positions a subset keeps (first N per class)."""

    root: Path
    train_samples: list[tuple[str, int]]
    test_samples: list[tuple[str, int]]
    train_keep: np.ndarray
    test_keep: np.ndarray
    num_classes: int
    content_hash: str


def load_folder(root: Path, subset_per_class, test_subset_per_class) -> FolderSplits:
    root = check_folder(root)
    train_samples, classes = read_folder(root, "train")
    test_samples, test_classes = read_folder(root, "test")
    if test_classes != classes:
        only_val = sorted(set(test_classes) - set(classes))
        only_train = sorted(set(classes) - set(test_classes))
        differs = (f"val/{only_val[0]} has no train/ folder" if only_val
                   else f"train/{only_train[0]} has no val/ folder")
        raise DataError(
            f"image folder {root}: {differs} ({len(classes)} train classes, "
            f"{len(test_classes)} val classes); expected the same class folders in both"
        )
    labels = {
        name: np.array([y for _, y in samples], dtype=np.int64)
        for name, samples in (("train", train_samples), ("test", test_samples))
    }
    return FolderSplits(
        root,
        train_samples,
        test_samples,
        first_per_class(labels["train"], subset_per_class),
        first_per_class(labels["test"], test_subset_per_class),
        len(classes),
        folder_hash(root),
    )


class ImageFolderFormat(Dataset):
    """A dataset of class folders, `<root>/train/<class>/*` and `<root>/val/<class>/*`: served at
    224 px (RandomResizedCrop + flip, decoded per step by the backend's own pipeline), or at up
    to 64 px as arrays prepared once (bench/data/datasets/prepared.py)."""

    kind = FOLDER
    resolution = 224
    backends_exact = False
    default_backend = "torch"
    resizable = True

    def fetch(self, data, root: Path, log=print) -> Path:
        return check_folder(root)

    def present(self, data, root: Path) -> bool:
        return all((Path(root) / folder).is_dir() for folder in SPLIT_FOLDERS.values())

    def absent_reason(self, data, root: Path) -> str:
        return f"no image folder at {root} (expected train/ and val/; set data.root)"

    def content_hash(self, root: Path) -> str:
        return folder_hash(root)


@register_dataset("imagefolder")
class ImageFolder(ImageFolderFormat):
    """Any image folder; its classes are counted from its folders."""

    title, order = "image folder", 50
