"""Dataset resolution: a DataSpec becomes in-memory uint8 splits plus a content hash."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.datasets import cifar, imagefolder, synthetic
from bench.errors import DataError, SpecError

CIFAR_DATASETS = ("cifar100", "synthetic")
IMAGE_FOLDER_DATASETS = ("imagenet", "imagefolder")
DATASETS = CIFAR_DATASETS + IMAGE_FOLDER_DATASETS


@dataclass(frozen=True)
class CifarSplits:
    """Train and test as tensors; `train_index` maps subset positions to file indices."""

    train_images: torch.Tensor  # uint8 [N, 3, 32, 32]
    train_labels: torch.Tensor  # int64 [N]
    train_index: torch.Tensor  # int64 [N], index of each sample in the full train file
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    content_hash: str
    root: Path
    test_index: torch.Tensor  # int64 [M], index of each sample in the test file


def default_root(data, workdir: Path) -> Path:
    if data.root:
        return Path(data.root).expanduser()
    if data.dataset == "synthetic":
        return Path(workdir) / "data" / data.synthetic_config.folder_name()
    return Path(workdir) / "data" / data.dataset


def content_hash(root: Path, dataset: str) -> str:
    """sha256 over the split files: two datasets with the same bytes get the same cells.

    Image folders hash their sorted file list with sizes instead (cheap for ImageNet's 1.3M files).
    """
    if dataset in IMAGE_FOLDER_DATASETS:
        return imagefolder.folder_hash(root)
    if dataset not in CIFAR_DATASETS:
        raise SpecError(f"content hash: unknown dataset '{dataset}'; valid: {', '.join(DATASETS)}")
    digest = hashlib.sha256()
    for name in ("train", "test", "meta"):
        path = cifar.split_files(root)[name]
        if not path.is_file():
            raise DataError(f"CIFAR-100 file not found: {path} (expected torchvision's layout)")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def ensure_cifar(data, workdir: Path, download: bool = True) -> Path:
    """Generate synthetic data on first use; download real CIFAR-100 where the network allows."""
    root = default_root(data, workdir)
    if data.dataset == "synthetic":
        return synthetic.generate(root, data.synthetic_config)
    if not cifar.split_files(root)["train"].is_file() and download:
        try:
            cifar.download(root)
        except Exception as exc:
            raise DataError(
                f"CIFAR-100 not found under {root} and download failed ({type(exc).__name__}); "
                "expected torchvision's cifar-100-python folder there (set data.root)"
            ) from None
    return root


def load_cifar(data, workdir: Path) -> CifarSplits:
    root = ensure_cifar(data, workdir)
    verify = data.dataset == "cifar100"
    train = cifar.read_split(root, "train", verify=verify)
    test = cifar.read_split(root, "test", verify=False)
    keep = cifar.first_per_class(train.labels, data.subset_per_class)
    test_keep = cifar.first_per_class(test.labels, data.test_subset_per_class)
    return CifarSplits(
        train_images=torch.from_numpy(np.ascontiguousarray(train.images[keep])),
        train_labels=torch.from_numpy(train.labels[keep]),
        train_index=torch.from_numpy(keep.astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(test.images[test_keep])),
        test_labels=torch.from_numpy(test.labels[test_keep]),
        num_classes=train.num_classes,
        content_hash=content_hash(root, data.dataset),
        root=root,
        test_index=torch.from_numpy(test_keep.astype(np.int64)),
    )


def dataset_hash(data, workdir: Path) -> str:
    """The content hash that enters cell keys (data is generated or downloaded if needed)."""
    if data.dataset in IMAGE_FOLDER_DATASETS:
        return content_hash(imagefolder.check_folder(default_root(data, workdir)), data.dataset)
    if data.dataset not in CIFAR_DATASETS:
        raise SpecError(
            f"data.dataset '{data.dataset}': no loader in this version of kdbench; "
            f"expected one of {', '.join(DATASETS)}"
        )
    return content_hash(ensure_cifar(data, workdir), data.dataset)


def present_hash(data, workdir: Path) -> str | None:
    """The content hash of data already on disk, or None: nothing is generated or downloaded
    (for `--dry-run` and `--print-spec` on a machine without the data)."""
    root = default_root(data, workdir)
    if data.dataset in IMAGE_FOLDER_DATASETS:
        present = all((root / folder).is_dir() for folder in imagefolder.SPLIT_FOLDERS.values())
    else:
        present = all(path.is_file() for path in cifar.split_files(root).values())
    if present:
        return content_hash(root, data.dataset)
    if data.dataset == "synthetic":  # a pure function of its config: made and hashed in a temp dir
        with tempfile.TemporaryDirectory(prefix="kdbench-synthetic-") as scratch:
            folder = synthetic.generate(Path(scratch) / "data", data.synthetic_config)
            return content_hash(folder, data.dataset)
    return None


def absent_reason(data, workdir: Path) -> str:
    root = default_root(data, workdir)
    if data.dataset == "synthetic":
        return f"synthetic data not generated yet under {root} (made on the first run)"
    if data.dataset == "cifar100":
        return f"CIFAR-100 not under {root} yet (downloaded on the first run, or set data.root)"
    return f"no image folder at {root} (expected train/ and val/; set data.root)"
