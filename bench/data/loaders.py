"""`make_loaders(data, ...)`: the one entry the train loop uses, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.augment import PAD, augment_params
from bench.data.datasets import CIFAR_DATASETS, DATASETS, IMAGE_FOLDER_DATASETS, load_cifar
from bench.errors import SpecError

BACKENDS = ("torch", "gpu", "ffcv")


@dataclass
class Loaders:
    """`train.epoch(e)` / `test.epoch(0)` yield (images, labels, file indices) on the device."""

    train: Any
    test: Any
    num_classes: int
    content_hash: str
    seed: int
    augment: bool = True

    def variants(self, epoch: int, indices: torch.Tensor):
        """The (dx, dy, flip) each sample of a train batch received (teacher-logit cache)."""
        if not self.augment:
            centre = torch.full_like(indices, PAD)
            return centre, centre.clone(), torch.zeros_like(indices, dtype=torch.bool)
        return augment_params(self.seed, epoch, indices)


def _split_loaders(
    loader_cls,
    splits,
    *,
    batch_size: int,
    test_batch_size: int,
    seed: int,
    augment: bool,
    **options,
):
    """Train (shuffled by the counter scheme, augmented) and test (in order, plain) loaders."""
    train = loader_cls(
        splits.train_images,
        splits.train_labels,
        splits.train_index,
        batch_size=batch_size,
        seed=seed,
        train=True,
        augment=augment,
        **options,
    )
    test = loader_cls(
        splits.test_images,
        splits.test_labels,
        splits.test_index,
        batch_size=test_batch_size,
        seed=seed,
        train=False,
        augment=False,
        **options,
    )
    return train, test


def make_loaders(
    data,
    *,
    batch_size: int,
    seed: int,
    device: torch.device | str,
    workdir: Path,
    test_batch_size: int | None = None,
) -> Loaders:
    test_batch_size = test_batch_size or batch_size
    if data.backend not in BACKENDS:
        raise SpecError(
            f"data.backend '{data.backend}' is not available; expected one of {BACKENDS}"
        )
    if data.dataset in IMAGE_FOLDER_DATASETS:
        from bench.data.imagefolder import make_imagefolder_loaders

        return make_imagefolder_loaders(
            data,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            seed=seed,
            device=device,
            workdir=Path(workdir),
        )
    if data.dataset not in CIFAR_DATASETS:
        raise SpecError(
            f"data.dataset '{data.dataset}' has no loader; expected one of {', '.join(DATASETS)}"
        )
    splits = load_cifar(data, workdir)
    if data.backend in ("torch", "gpu"):
        if data.backend == "torch":
            from bench.data.torch_backend import TorchLoader as loader_cls

            options = {"num_workers": data.num_workers}
        else:
            from bench.data.gpu_backend import GpuLoader as loader_cls

            options = {}
        train, test = _split_loaders(
            loader_cls,
            splits,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            seed=seed,
            augment=data.augment,
            device=device,
            **options,
        )
    else:
        from bench.data.ffcv_backend import make_ffcv_loaders

        train, test = make_ffcv_loaders(
            splits,
            workdir=Path(workdir),
            dataset=data.dataset,
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            seed=seed,
            augment=data.augment,
            num_workers=data.num_workers,
            device=device,
        )
    return Loaders(train, test, splits.num_classes, splits.content_hash, seed, data.augment)
