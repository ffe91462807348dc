"""Backend `torch`: a torch Dataset + DataLoader, the shared augmentation as its transform.

The sampler yields (index, epoch) pairs, so workers need no per-epoch state to augment.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.data.augment import (
    CIFAR100_NORMALIZATION,
    Normalization,
    array_family,
    epoch_order,
    normalize,
)
from bench.data.backends.base import Backend, register_backend, split_loaders
from bench.data.datasets.imagefolder import FolderSamples
from bench.data.sharding import WHOLE, Shard
from bench.data.strong_augment import train_batch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class _CifarSamples(Dataset):
    def __init__(self, images, labels, file_index, seed: int, augment: bool | str, stats,
                 views: int = 1):
        self.images, self.labels, self.file_index = images, labels, file_index
        self.seed, self.augment, self.stats = seed, array_family(augment), stats
        self.views = views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]):
        position, epoch = key
        image = self.images[position : position + 1]
        index = self.file_index[position : position + 1]
        if self.augment:
            out = train_batch(image, self.seed, epoch, index, self.stats, self.augment, self.views)
            if self.views > 1:
                return out, self.labels[position], index[0]  # [views, 3, H, W]
        else:
            out = normalize(image, self.stats)
        return out[0], self.labels[position], index[0]


class _EpochBatches(Sampler):
    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, shuffle: bool,
                 shard: Shard = WHOLE):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.shuffle, self.shard = shuffle, shard

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_order(self.seed, self.epoch, self.n) if self.shuffle else torch.arange(self.n)
        for start in range(0, self.n, self.batch_size):
            part = self.shard.part(order[start : start + self.batch_size])
            if len(part):  # a rank's part of the last test batch may be empty
                yield [(int(i), self.epoch) for i in part]


class SampleLoader:
    """Batches of one epoch from a Dataset keyed by (position, epoch), through a DataLoader.

    The train order is `epoch_order(seed, epoch, n)`; the test order is the file order.
    """

    def __init__(
        self,
        samples: Dataset,
        *,
        batch_size: int,
        seed: int,
        train: bool,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        shard: Shard = WHOLE,
    ):
        self.samples, self.shard = samples, shard
        self.batch_size, self.seed, self.train = batch_size, seed, train
        self.num_workers = num_workers
        self.device = torch.device(device)

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        sampler = _EpochBatches(len(self.samples), self.batch_size, self.seed, epoch, self.train,
                                self.shard)
        loader = DataLoader(
            self.samples,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        non_blocking = self.device.type == "cuda"
        for images, labels, indices in loader:
            if images.dim() == 5:  # [B, views, ...] -> every view's batch in turn, [views * B]
                images = images.transpose(0, 1).flatten(0, 1)
            yield (
                images.to(self.device, non_blocking=non_blocking),
                labels.to(self.device, non_blocking=non_blocking),
                indices.to(self.device, non_blocking=non_blocking),
            )


class TorchLoader(SampleLoader):
    """Batches of (images float [B,3,32,32], labels int64, file indices int64) for one epoch."""

    def __init__(
        self,
        images,
        labels,
        file_index,
        *,
        batch_size: int,
        seed: int,
        train: bool,
        augment: bool | str,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        stats: Normalization = CIFAR100_NORMALIZATION,
        views: int = 1,
        shard: Shard = WHOLE,
    ):
        super().__init__(
            _CifarSamples(images, labels, file_index, seed, augment if train else False, stats,
                          views if train else 1),
            batch_size=batch_size,
            seed=seed,
            train=train,
            num_workers=num_workers,
            device=device,
            shard=shard,
        )


@register_backend("torch")
class TorchBackend(Backend):
    """torch's DataLoader over samples: array datasets (the shared augmentation as its
    transform) and image folders (PIL decoding, torchvision's resized crop)."""

    order, serves_folders, pixel_pipeline = 10, True, "torchvision-pil"

    def array_loaders(self, splits, *, workdir, dataset, batch_size, test_batch_size, seed,
                      augment, num_workers, device, views=1, shard=WHOLE):
        return split_loaders(TorchLoader, splits, batch_size=batch_size,
                             test_batch_size=test_batch_size, seed=seed, augment=augment,
                             views=views, device=device, stats=splits.normalization, shard=shard,
                             num_workers=num_workers)

    def folder_loaders(self, splits, *, workdir, batch_size, test_batch_size, seed, augment,
                       num_workers, device, shard=WHOLE):
        return tuple(
            SampleLoader(FolderSamples(samples, keep, seed, train=is_train, augment=augment),
                         batch_size=batch, seed=seed, train=is_train, num_workers=num_workers,
                         device=device, shard=shard)
            for samples, keep, batch, is_train in (
                (splits.train_samples, splits.train_keep, batch_size, True),
                (splits.test_samples, splits.test_keep, test_batch_size, False),
            )
        )
