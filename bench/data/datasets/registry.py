"""A DataSpec's data resolved through its dataset (bench/data/datasets/base.py): its files
fetched, its content hash, and its splits in memory (uint8) where it is an array dataset."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.augment import CIFAR100_NORMALIZATION, Normalization
from bench.data.datasets import cifar, prepared
from bench.data.datasets.base import ARRAYS, Dataset, dataset_named
from bench.errors import DataError


@dataclass(frozen=True)
class CifarSplits:
    """Train and test as tensors; `train_index` maps subset positions to file indices."""

    train_images: torch.Tensor  # uint8 [N, 3, 32, 32]
    train_labels: torch.Tensor  # int64 [N]
    train_index: torch.Tensor  # int64 [N], index of each sample in the full train file
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    content_hash: str
    root: Path
    test_index: torch.Tensor  # int64 [M], index of each sample in the test file
    normalization: Normalization = CIFAR100_NORMALIZATION
    read_whole: Callable[[str], cifar.ImageArrays] | None = None  # the whole splits, as read
    # train images held out for validation (data.val_per_class); empty without it
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    val_index: torch.Tensor | None = None


def default_root(data, workdir: Path) -> Path:
    return dataset_named(data.dataset).root(data, workdir)


def content_hash(root: Path, dataset: str) -> str:
    """What enters the cell keys: sha256 over a CIFAR-format dataset's split files, or an image
    folder's sorted file list with sizes (cheap for ImageNet's 1.3M files)."""
    return dataset_named(dataset).content_hash(root)


def _fetched(dataset: Dataset, data, workdir: Path, log=print) -> Path:
    return dataset.fetch(data, dataset.root(data, workdir), log=log)


def _splits(data, train, test, **facts) -> CifarSplits:
    """Whole train and test arrays cut to the spec's subsets (first N per class) as tensors; the
    validation images (data.val_per_class) are held out of train before the subset is cut."""
    try:
        val = cifar.held_out_per_class(train.labels, data.val_per_class)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    remaining = np.setdiff1d(np.arange(len(train.labels)), val)
    keep = remaining[cifar.first_per_class(train.labels[remaining], data.subset_per_class)]
    test_keep = cifar.first_per_class(test.labels, data.test_subset_per_class)
    if len(val):
        facts |= {
            "val_images": torch.from_numpy(np.ascontiguousarray(train.images[val])),
            "val_labels": torch.from_numpy(train.labels[val]),
            "val_index": torch.from_numpy(val.astype(np.int64)),
        }
    return CifarSplits(
        train_images=torch.from_numpy(np.ascontiguousarray(train.images[keep])),
        train_labels=torch.from_numpy(train.labels[keep]),
        train_index=torch.from_numpy(keep.astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(test.images[test_keep])),
        test_labels=torch.from_numpy(test.labels[test_keep]),
        num_classes=train.num_classes,
        test_index=torch.from_numpy(test_keep.astype(np.int64)),
        **facts,
    )


def load_cifar(data, workdir: Path) -> CifarSplits:
    """An array dataset's splits, read from its files (checked against their published sums)."""
    dataset = dataset_named(data.dataset)
    root = _fetched(dataset, data, workdir)
    return _splits(
        data,
        dataset.read(root, "train", verify=True),
        dataset.read(root, "test", verify=False),
        content_hash=dataset.content_hash(root),
        root=root,
        normalization=dataset.normalization,
        read_whole=lambda split: dataset.read(root, split, verify=split == "train"),
    )


def folder_root(data, workdir: Path, log=print) -> Path:
    """An image folder's root, checked (and arranged first where its dataset needs it)."""
    return _fetched(dataset_named(data.dataset), data, workdir, log=log)


def _user_or(stats: Normalization, data) -> Normalization:
    return stats if data.mean is None else Normalization(tuple(data.mean), tuple(data.std))


def load_arrays(data, workdir: Path, log=print) -> CifarSplits:
    """An array dataset, or a small image folder prepared into arrays, as in-memory splits."""
    if not data.prepared_arrays:
        splits = load_cifar(data, workdir)
        return dataclasses.replace(splits, normalization=_user_or(splits.normalization, data))
    root = folder_root(data, workdir)
    folder = prepared.PreparedFolder(
        prepared.prepared_folder(root, data.resolution, workdir, log=log)
    )
    return _splits(
        data,
        folder.read("train"),
        folder.read("test"),
        content_hash=prepared.prepared_hash(root, data.resolution),
        root=folder.folder,
        normalization=_user_or(folder.normalization, data),
        read_whole=folder.read,
    )


def dataset_hash(data, workdir: Path) -> str:
    """The content hash that enters cell keys (data is generated or downloaded if needed)."""
    dataset = dataset_named(data.dataset)
    root = _fetched(dataset, data, workdir)
    if data.prepared_arrays:
        return prepared.prepared_hash(root, data.resolution)
    return dataset.content_hash(root)


def present_hash(data, workdir: Path) -> str | None:
    """The content hash of data already on disk, or None: nothing is generated or downloaded
    (for `--dry-run` and `--print-spec` on a machine without the data)."""
    dataset = dataset_named(data.dataset)
    root = dataset.root(data, workdir)
    if dataset.present(data, root):
        if data.prepared_arrays:
            return prepared.prepared_hash(root, data.resolution)
        return dataset.content_hash(root)
    return dataset.hash_when_absent(data)


def absent_reason(data, workdir: Path) -> str:
    dataset = dataset_named(data.dataset)
    return dataset.absent_reason(data, dataset.root(data, workdir))


def is_array_dataset(name: str) -> bool:
    """CIFAR's format, read into memory whole (an image folder is read where it is)."""
    return dataset_named(name).kind == ARRAYS
