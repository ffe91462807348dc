"""A test-only backend loaded through $KDBENCH_PLUGINS, as a user's own would be: `data.backend:
staged` keeps array splits in host memory and moves each batch to the device as it is served
(the in-memory loader on the CPU, then a copy). It serves array datasets only, the same batches
as every other array backend. No file but this one names it."""

from __future__ import annotations

import torch

from bench.data.backends.base import Backend, register_backend, split_loaders
from bench.data.backends.memory_backend import MemoryLoader
from bench.data.sharding import WHOLE


class _Staged:
    """A loader whose batches are made on the CPU and copied to `device` one at a time."""

    def __init__(self, loader: MemoryLoader, device):
        self.loader, self.device = loader, torch.device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int):
        for batch in self.loader.epoch(epoch):
            yield tuple(t.to(self.device, non_blocking=True) for t in batch)


@register_backend("staged")
class StagedBackend(Backend):
    order = 200

    def array_loaders(self, splits, *, workdir, dataset, batch_size, test_batch_size, seed,
                      augment, num_workers, device, views=1, shard=WHOLE):
        train, test = split_loaders(MemoryLoader, splits, batch_size=batch_size,
                                    test_batch_size=test_batch_size, seed=seed, augment=augment,
                                    views=views, device="cpu", stats=splits.normalization,
                                    shard=shard)
        return _Staged(train, device), _Staged(test, device)
