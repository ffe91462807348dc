"""`make_loaders(data, ...)`: the one entry the train loop uses, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.augment import CIFAR100_NORMALIZATION, PAD, Normalization, augment_params
from bench.data.backends.base import backend_named
from bench.data.backends.memory_backend import MemoryLoader
from bench.data.datasets.base import FOLDER, dataset_named
from bench.data.datasets.imagefolder import load_folder
from bench.data.datasets.registry import folder_root, load_arrays
from bench.data.sharding import WHOLE, Shard, check_shardable
from bench.spec import check_data, check_views


@dataclass
class Loaders:
    """`train.epoch(e)` / `test.epoch(0)` yield (images, labels, file indices) on the device."""

    train: Any
    test: Any
    num_classes: int
    content_hash: str
    seed: int
    augment: bool = True
    train_size: int = 0  # train samples (after the subset)
    normalization: Normalization = CIFAR100_NORMALIZATION
    val: Any = None  # the train images held out for validation (in order, plain), if any

    def variants(self, epoch: int, indices: torch.Tensor):
        """The (dx, dy, flip) each sample of a train batch received (teacher-logit cache)."""
        if not self.augment:
            centre = torch.full_like(indices, PAD)
            return centre, centre.clone(), torch.zeros_like(indices, dtype=torch.bool)
        return augment_params(self.seed, epoch, indices)


def make_loaders(
    data,
    *,
    batch_size: int,
    seed: int,
    device: torch.device | str,
    workdir: Path,
    test_batch_size: int | None = None,
    views: int = 1,
    shard: Shard = WHOLE,
) -> Loaders:
    """The one entry from a DataSpec to its loaders: the dataset's splits, then its backend's
    loaders over them (bench/data/backends/base.py's protocol). With `views=2` each train batch is
    the weak views of its images, then their strong views ([2B]; labels and indices [B]). Under
    DDP (`shard`), each batch is this rank's part of the global batch of `batch_size`."""
    test_batch_size = test_batch_size or batch_size
    check_data(data)
    check_views(data, views)
    workdir = Path(workdir)
    backend = backend_named(data.backend)
    if dataset_named(data.dataset).kind == FOLDER and not data.prepared_arrays:
        return _folder_loaders(data, backend, batch_size, test_batch_size, seed, device, workdir,
                               shard)
    splits = load_arrays(data, workdir)
    check_shardable(batch_size, len(splits.train_labels), shard)
    check_shardable(test_batch_size, len(splits.test_labels), shard, "test")
    train, test = backend.array_loaders(
        splits, workdir=workdir, dataset=data.dataset, batch_size=batch_size,
        test_batch_size=test_batch_size, seed=seed, augment=data.augment,
        num_workers=data.num_workers, device=device, views=views, shard=shard,
    )
    return Loaders(
        train,
        test,
        splits.num_classes,
        splits.content_hash,
        seed,
        data.augment,
        len(splits.train_labels),
        splits.normalization,
        _val_loader(splits, test_batch_size, seed, device, shard),
    )


def _val_loader(splits, batch_size: int, seed: int, device, shard: Shard):
    """The held-out train images, evaluated like test. Arrays in memory on every backend: they
    are read from the train split, unaugmented, so every backend scores the same pixels."""
    if splits.val_labels is None:
        return None
    check_shardable(batch_size, len(splits.val_labels), shard, "validation")
    return MemoryLoader(splits.val_images, splits.val_labels, splits.val_index,
                        batch_size=batch_size, seed=seed, train=False, augment=False,
                        device=device, stats=splits.normalization, shard=shard)


def _folder_loaders(data, backend, batch_size, test_batch_size, seed, device, workdir: Path,
                    shard: Shard) -> Loaders:
    splits = load_folder(
        folder_root(data, workdir), data.subset_per_class, data.test_subset_per_class
    )
    check_shardable(batch_size, len(splits.train_keep), shard)
    check_shardable(test_batch_size, len(splits.test_keep), shard, "test")
    train, test = backend.folder_loaders(
        splits, workdir=workdir, batch_size=batch_size, test_batch_size=test_batch_size,
        seed=seed, augment=data.augment, num_workers=data.num_workers, device=device,
        shard=shard,
    )
    return Loaders(
        train, test, splits.num_classes, splits.content_hash, seed, True, len(splits.train_keep)
    )
