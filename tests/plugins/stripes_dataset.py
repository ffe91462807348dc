"""A test-only dataset loaded through $KDBENCH_PLUGINS, as a user's own would be: `data.dataset:
stripes`, 4 classes of 32 px images (a horizontal stripe whose height is the class, plus noise),
generated on first use into one .npz file (read without pickle: a data file runs no code). No
file but this one names it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from bench.data.augment import Normalization
from bench.data.datasets.base import Dataset, register_dataset
from bench.data.datasets.cifar import ImageArrays

FILE = "stripes.npz"
CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 24, 6


def _split(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.tile(np.arange(CLASSES), per_class)
    images = rng.normal(100, 20, size=(len(labels), 3, 32, 32))
    for row, label in enumerate(labels):
        images[row, :, 8 * label: 8 * label + 8, :] += 100
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels.astype(np.int64)


@register_dataset("stripes")
class Stripes(Dataset):
    title, order, num_classes = "stripes", 200, CLASSES
    normalization = Normalization((0.45, 0.45, 0.45), (0.2, 0.2, 0.2))

    def fetch(self, data, root: Path, log=print) -> Path:
        if not self.present(data, root):
            rng = np.random.default_rng(7)
            (train_x, train_y), (test_x, test_y) = (_split(rng, TRAIN_PER_CLASS),
                                                    _split(rng, TEST_PER_CLASS))
            root.mkdir(parents=True, exist_ok=True)
            partial = root / f".{FILE}.partial.npz"
            np.savez(partial, train_images=train_x, train_labels=train_y, test_images=test_x,
                     test_labels=test_y)
            os.replace(partial, root / FILE)
        return root

    def present(self, data, root: Path) -> bool:
        return (Path(root) / FILE).is_file()

    def absent_reason(self, data, root: Path) -> str:
        return f"stripes not generated yet under {root} (made on the first run)"

    def content_hash(self, root: Path) -> str:
        return hashlib.sha256((Path(root) / FILE).read_bytes()).hexdigest()[:16]

    def read(self, root: Path, split: str, verify: bool) -> ImageArrays:
        with np.load(Path(root) / FILE, allow_pickle=False) as arrays:
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        return ImageArrays(images, labels, tuple(f"stripe_{c}" for c in range(CLASSES)))

    def files(self, root: Path) -> list[Path]:
        return [Path(root) / FILE]
