"""Backend `memory` (formerly `gpu`; CIFAR-size data only): the uint8 splits live on the device
(GPU memory on CUDA, RAM on a CPU), batches are slices.

Each epoch visits `epoch_order(seed, epoch, n)` (computed on the device), and the train transform is
the shared `augment_batch` run as batched tensor ops, so nothing leaves the device. The code is
device-agnostic: on a CPU it is the same path, which is how the tests check it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bench.data.augment import (
    CIFAR100_NORMALIZATION,
    Normalization,
    array_family,
    epoch_order,
    normalize,
)
from bench.data.backends.base import Backend, register_backend, split_loaders
from bench.data.sharding import WHOLE, Shard
from bench.data.strong_augment import train_batch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MemoryLoader:
    """Batches of (images float [B,3,32,32], labels int64, file indices int64) for one epoch;
    under DDP, this rank's part of each global batch (`shard`)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        file_index: torch.Tensor,
        *,
        batch_size: int,
        seed: int,
        train: bool,
        augment: bool | str,
        device: torch.device | str = "cpu",
        stats: Normalization = CIFAR100_NORMALIZATION,
        views: int = 1,
        shard: Shard = WHOLE,
    ):
        self.shard = shard
        self.device = torch.device(device)
        self.views = views
        self.stats = stats
        self.images = images.to(self.device, dtype=torch.uint8).contiguous()
        self.labels = labels.to(self.device, dtype=torch.int64)
        self.file_index = file_index.to(self.device, dtype=torch.int64)
        self.batch_size, self.seed, self.train = batch_size, seed, train
        self.augment = array_family(augment) if train else None

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n = self.num_samples
        order = epoch_order(self.seed, epoch, n, device=self.device) if self.train else None
        for start in range(0, n, self.batch_size):
            if order is None:
                positions = slice(start, start + self.batch_size)
                if self.shard.world > 1:
                    end = min(start + self.batch_size, n)
                    positions = self.shard.part(torch.arange(start, end, device=self.device))
            else:
                positions = self.shard.part(order[start : start + self.batch_size])
            if isinstance(positions, torch.Tensor) and not len(positions):
                continue  # a rank's empty part of the last test batch
            images = self.images[positions]
            indices = self.file_index[positions]
            if self.augment:
                out = train_batch(images, self.seed, epoch, indices, self.stats, self.augment,
                                  self.views)
            else:
                out = normalize(images, self.stats)
            yield out, self.labels[positions], indices


@register_backend("memory")
class MemoryBackend(Backend):
    """The uint8 splits on the device, batches sliced and augmented there (array data only)."""

    order, aliases = 20, ("gpu",)

    def array_loaders(self, splits, *, workdir, dataset, batch_size, test_batch_size, seed,
                      augment, num_workers, device, views=1, shard=WHOLE):
        return split_loaders(MemoryLoader, splits, batch_size=batch_size,
                             test_batch_size=test_batch_size, seed=seed, augment=augment,
                             views=views, device=device, stats=splits.normalization, shard=shard)
