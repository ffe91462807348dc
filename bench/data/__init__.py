"""Datasets, the shared augmentation and the loaders of every backend (torch, memory, ffcv)."""

from bench.data.loaders import Loaders, make_loaders
from bench.data.prepare import prepare

__all__ = ["Loaders", "make_loaders", "prepare"]
