"""A distributed run's data: each rank's part of every global batch.

The global epoch order (`epoch_order`) is cut into global batches as in one process; rank r of N
takes the r-th contiguous part of each batch (`tensor_split`), so the ranks' parts are disjoint and
their union is the epoch, every sample exactly once, with no padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import SpecError


@dataclass(frozen=True)
class Shard:
    """This rank's part of every global batch: a contiguous slice, `tensor_split` sizes (the
    first `b % world` ranks take one sample more when `world` does not divide a batch of b)."""

    rank: int = 0
    world: int = 1

    def part(self, positions):
        if self.world == 1:
            return positions
        if isinstance(positions, np.ndarray):
            return np.array_split(positions, self.world)[self.rank]
        return positions.tensor_split(self.world)[self.rank]

    def concat(self, order, batch_size: int):
        """This rank's parts of every global batch of `order`, one after the other."""
        if self.world == 1:
            return order
        parts = [self.part(order[s : s + batch_size]) for s in range(0, len(order), batch_size)]
        if isinstance(order, np.ndarray):
            return np.concatenate(parts) if parts else order[:0]
        return torch.cat(parts) if parts else order[:0]


WHOLE = Shard()  # a single process: every batch whole


def check_shardable(batch_size: int, samples: int, shard: Shard, what: str = "train") -> None:
    """A global batch must split into equal parts, and the last (partial) batch must give every
    rank at least one sample, or a rank would step with no data."""
    if shard.world == 1:
        return
    if batch_size % shard.world:
        raise SpecError(
            f"recipe.batch_size {batch_size}: the global batch must divide by the {shard.world} "
            f"ranks (each rank takes batch_size / ranks)"
        )
    last = samples % batch_size
    if what == "train" and 0 < last < shard.world:
        raise SpecError(
            f"recipe.batch_size {batch_size}: the last batch of the {samples} train samples holds "
            f"{last}, fewer than the {shard.world} ranks; choose a batch size that leaves 0 or at "
            f"least {shard.world}"
        )
