"""Datasets, the shared augmentation and the loaders of every backend."""

from bench.data.loaders import Loaders, make_loaders

__all__ = ["Loaders", "make_loaders"]
