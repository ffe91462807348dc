"""Backends by name. A backend is one class in one file of this package (or of a
$KDBENCH_PLUGINS folder) decorated with `@register_backend("name")`, implementing the one loader
protocol below: it serves array datasets, image folders or both, as train and test loaders whose
`epoch(e)` yields (images, labels, file indices) on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data.sharding import WHOLE, Shard
from bench.errors import DataError
from bench.registry import Registry


class Backend:
    name = ""
    order = 100  # where it is listed among the backends
    aliases: tuple[str, ...] = ()  # older names still accepted
    serves_arrays = True  # array datasets (CIFAR's format, prepared image folders)
    serves_folders = False  # image folders decoded per step (ImageNet at 224 px)
    # how it turns an image folder's files into pixels; where backends differ, part of the
    # data identity of those cells
    pixel_pipeline = ""

    def array_loaders(self, splits: Any, *, workdir: Path, dataset: str, batch_size: int,
                      test_batch_size: int, seed: int, augment: bool | str, num_workers: int,
                      device: Any, views: int = 1, shard: Shard = WHOLE) -> tuple[Any, Any]:
        """Train (shuffled by the counter scheme, augmented) and test (in order, plain) loaders
        over in-memory splits (bench.data.datasets.registry.ArraySplits)."""
        raise NotImplementedError

    def folder_loaders(self, splits: Any, *, workdir: Path, batch_size: int,
                       test_batch_size: int, seed: int, augment: bool | str, num_workers: int,
                       device: Any, shard: Shard = WHOLE) -> tuple[Any, Any]:
        """The same over an image folder's samples (bench.data.datasets.imagefolder)."""
        raise NotImplementedError

    def prepare_arrays(self, splits: Any, workdir: Path) -> list[Path]:
        """Files `bench data prepare` writes for array splits (none by default)."""
        return []

    def prepare_folder(self, root: Path, content_hash: str, workdir: Path) -> list[Path]:
        """Files `bench data prepare` writes for an image folder (none by default)."""
        return []


def split_loaders(loader_cls, splits, *, batch_size: int, test_batch_size: int, seed: int,
                  augment: bool | str, views: int = 1, **options) -> tuple[Any, Any]:
    """Train and test loaders of a loader class that reads in-memory uint8 splits."""
    train = loader_cls(splits.train_images, splits.train_labels, splits.train_index,
                       batch_size=batch_size, seed=seed, train=True, augment=augment,
                       views=views, **options)
    test = loader_cls(splits.test_images, splits.test_labels, splits.test_index,
                      batch_size=test_batch_size, seed=seed, train=False, augment=False,
                      **options)
    return train, test


_BACKENDS: Registry[Backend] = Registry("bench.data.backends", "backend")


def register_backend(name: str):
    """Class decorator: `@register_backend("dali")` makes `data.backend: dali` load with it."""
    return _BACKENDS.register(name)


def backends() -> dict[str, Backend]:
    """Every backend: this package's modules, and the plugin files the methods loaded."""
    return _BACKENDS.all()


def backend_aliases() -> dict[str, str]:
    """Older name -> backend."""
    return {alias: name for name, backend in backends().items() for alias in backend.aliases}


def backend_named(name: str) -> Backend:
    name = backend_aliases().get(name, name)
    found = _BACKENDS.get(name)
    if found is None:
        raise DataError(f"data.backend '{name}': expected one of {', '.join(backends())}")
    return found
