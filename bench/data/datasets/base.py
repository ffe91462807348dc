"""Datasets by name. A dataset is one class in one file of this package (or of a $KDBENCH_PLUGINS
folder) decorated with `@register_dataset("name")`: it declares its facts (the size it is served
at, its classes, which backends serve it, whether they all give the same pixels) and how its
files are found, fetched, hashed and read. The spec's dataset names and checks derive from here.

Two kinds: `arrays`, splits of uint8 images in memory (CIFAR's format: `CifarFormat` in
cifar.py), augmented by the counter-based code every backend shares; and `folder`, class
folders of image files (`ImageFolderFormat` in imagefolder.py), decoded per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.data.augment import CIFAR100_NORMALIZATION, Normalization
from bench.errors import DataError
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.data.datasets.cifar import ImageArrays

ARRAYS, FOLDER = "arrays", "folder"


class Dataset:
    """A dataset's facts and its files. `data` below is the matrix's DataSpec."""

    name = ""
    title = ""  # as its authors name it, for messages
    order = 100  # where it is listed among the datasets
    kind = ARRAYS
    resolution = 32  # the side it is served at (an image folder's default)
    num_classes: int | None = None  # None: counted from the data
    # None: every registered backend that serves its kind (bench/data/backends/)
    backends: tuple[str, ...] | None = None
    # True where every backend gives the same batches (tested); else each backend's pixel
    # pipeline is part of the data identity, so their runs never share a cell
    backends_exact = True
    default_backend = "memory"  # the fastest backend that gives the exact batches
    resizable = False  # an image folder served at any side (prepared up to 64 px, or at 224)
    normalization: Normalization = CIFAR100_NORMALIZATION  # per-channel statistics of arrays
    # the augmentation families it may be trained with (`data.augment`), and the side up to which
    # pad-4 crop + flip serves it (above: RandomResizedCrop + flip)
    augment_families: tuple[str, ...] = ("crop_flip", "rrc_flip")
    crop_flip_max_resolution = 64

    def augment_family(self, resolution: int) -> str:
        """What `data.augment: true` means at this side."""
        return "crop_flip" if resolution <= self.crop_flip_max_resolution else "rrc_flip"

    def classes(self, data: Any) -> int | None:
        """Known from the spec alone, or None (counted from the class folders)."""
        return self.num_classes

    def root(self, data: Any, workdir: Path) -> Path:
        return Path(data.root).expanduser() if data.root else Path(workdir) / "data" / self.name

    def fetch(self, data: Any, root: Path, log=print) -> Path:
        """Make the files present under `root` (download, generate or arrange them); `root`."""
        if not self.present(data, root):
            raise DataError(self.absent_reason(data, root))
        return root

    def present(self, data: Any, root: Path) -> bool:
        raise NotImplementedError

    def absent_reason(self, data: Any, root: Path) -> str:
        return f"no {self.title or self.name} at {root} (set data.root)"

    def content_hash(self, root: Path) -> str:
        """What enters the cell keys: the same bytes, the same cells."""
        raise NotImplementedError

    def download_url(self) -> str | None:
        """Where its files are fetched from on first use (None: they are not)."""
        return None

    def hash_when_absent(self, data: Any) -> str | None:
        """The content hash without the files on disk, where it is a pure function of the spec
        (generated data); else None."""
        return None

    # arrays only
    def read(self, root: Path, split: str, verify: bool) -> ImageArrays:
        """The whole split ('train' or 'test'); `verify`: check the files' published checksums."""
        raise NotImplementedError

    def files(self, root: Path) -> list[Path]:
        """The files `bench data prepare` reports as ready."""
        raise NotImplementedError


_DATASETS: Registry[Dataset] = Registry("bench.data.datasets", "dataset")


def register_dataset(name: str):
    """Class decorator: `@register_dataset("cifar100")` makes `data.dataset: cifar100` read it."""
    return _DATASETS.register(name)


def datasets() -> dict[str, Dataset]:
    """Every dataset: this package's modules, and the plugin files the methods loaded."""
    return _DATASETS.all()


def dataset_named(name: str) -> Dataset:
    """The registered dataset `name`; a DataError naming the valid ones otherwise."""
    found = _DATASETS.get(name)
    if found is None:
        raise DataError(f"data.dataset '{name}': expected one of {', '.join(datasets())}")
    return found
