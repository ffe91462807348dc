"""Dataset resolution: a DataSpec becomes in-memory uint8 splits plus a content hash."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.augment import CIFAR100_NORMALIZATION, Normalization
from bench.data.datasets import cifar, imagefolder, prepared, synthetic, tinyimagenet
from bench.errors import DataError, SpecError

CIFAR_DATASETS = ("cifar100", "cifar10", "synthetic")
REAL_CIFAR = ("cifar100", "cifar10")  # downloaded by torchvision, md5-checked
CIFAR_LAYOUTS = {"cifar100": cifar.CIFAR100, "cifar10": cifar.CIFAR10, "synthetic": cifar.CIFAR100}
NORMALIZATION = {
    "cifar100": CIFAR100_NORMALIZATION,
    "synthetic": CIFAR100_NORMALIZATION,  # generated in CIFAR-100's format, read as CIFAR-100
    # per-channel mean and std of CIFAR-10's 50,000 train images on [0, 1] pixels
    "cifar10": Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
IMAGE_FOLDER_DATASETS = ("imagenet", "imagefolder", "tinyimagenet")
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
    normalization: Normalization = CIFAR100_NORMALIZATION
    read_whole: Callable[[str], cifar.ImageArrays] | None = None  # whole splits, where not files
    # train images held out for validation (data.val_per_class); empty without it
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    val_index: torch.Tensor | None = None


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
    layout = CIFAR_LAYOUTS[dataset]
    for name in ("train", "test", "meta"):
        for path in cifar.batch_files(root, layout)[name]:
            if not path.is_file():
                raise DataError(
                    f"{layout.title} file not found: {path} (expected torchvision's layout)"
                )
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def ensure_cifar(data, workdir: Path, download: bool = True) -> Path:
    """Generate synthetic data on first use; download real CIFAR where the network allows."""
    root = default_root(data, workdir)
    if data.dataset == "synthetic":
        return synthetic.generate(root, data.synthetic_config)
    layout = CIFAR_LAYOUTS[data.dataset]
    if not cifar.split_files(root, layout)["train"].is_file() and download:
        try:
            cifar.download(root, layout)
        except Exception as exc:
            raise DataError(
                f"{layout.title} not found under {root} and download failed "
                f"({type(exc).__name__}); expected torchvision's {layout.folder} folder there "
                "(set data.root)"
            ) from None
    return root


def _splits(data, train, test, **facts) -> CifarSplits:
    """Whole train and test arrays cut to the spec's subsets (first N per class) as tensors; the
    validation images (data.val_per_class) are held out of train before the subset is cut."""
    try:
        val = cifar.held_out_per_class(train.labels, data.val_per_class)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    remaining = np.setdiff1d(np.arange(len(train.labels)), val)
    keep = remaining[cifar.first_per_class(train.labels[remaining], data.subset_per_class)]
    test_keep = cifar.first_per_class(test.labels, data.test_subset_per_class)
    if len(val):
        facts |= {
            "val_images": torch.from_numpy(np.ascontiguousarray(train.images[val])),
            "val_labels": torch.from_numpy(train.labels[val]),
            "val_index": torch.from_numpy(val.astype(np.int64)),
        }
    return CifarSplits(
        train_images=torch.from_numpy(np.ascontiguousarray(train.images[keep])),
        train_labels=torch.from_numpy(train.labels[keep]),
        train_index=torch.from_numpy(keep.astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(test.images[test_keep])),
        test_labels=torch.from_numpy(test.labels[test_keep]),
        num_classes=train.num_classes,
        test_index=torch.from_numpy(test_keep.astype(np.int64)),
        **facts,
    )


def load_cifar(data, workdir: Path) -> CifarSplits:
    root = ensure_cifar(data, workdir)
    layout = CIFAR_LAYOUTS[data.dataset]
    train = cifar.read_split(root, "train", verify=data.dataset in REAL_CIFAR, layout=layout)
    test = cifar.read_split(root, "test", verify=False, layout=layout)
    return _splits(
        data,
        train,
        test,
        content_hash=content_hash(root, data.dataset),
        root=root,
        normalization=NORMALIZATION[data.dataset],
    )


def folder_root(data, workdir: Path, log=print) -> Path:
    """An image folder's root, checked (Tiny-ImageNet's val split arranged into classes first)."""
    root = default_root(data, workdir)
    if data.dataset == "tinyimagenet":
        tinyimagenet.arrange_val(root, log=log)
    return imagefolder.check_folder(root)


def _user_or(stats: Normalization, data) -> Normalization:
    return stats if data.mean is None else Normalization(tuple(data.mean), tuple(data.std))


def load_arrays(data, workdir: Path, log=print) -> CifarSplits:
    """A CIFAR-format dataset, or a small image folder prepared into arrays, as in-memory splits."""
    if not data.prepared_arrays:
        splits = load_cifar(data, workdir)
        return dataclasses.replace(splits, normalization=_user_or(splits.normalization, data))
    root = folder_root(data, workdir)
    folder = prepared.PreparedFolder(
        prepared.prepared_folder(root, data.resolution, workdir, log=log)
    )
    return _splits(
        data,
        folder.read("train"),
        folder.read("test"),
        content_hash=prepared.prepared_hash(root, data.resolution),
        root=folder.folder,
        normalization=_user_or(folder.normalization, data),
        read_whole=folder.read,
    )


def dataset_hash(data, workdir: Path) -> str:
    """The content hash that enters cell keys (data is generated or downloaded if needed)."""
    if data.dataset in IMAGE_FOLDER_DATASETS:
        root = folder_root(data, workdir)
        if data.prepared_arrays:
            return prepared.prepared_hash(root, data.resolution)
        return content_hash(root, data.dataset)
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
        present = all(
            (root / folder).is_dir() for folder in imagefolder.SPLIT_FOLDERS.values()
        ) and not tinyimagenet.needs_arranging(root)
    else:
        layout = CIFAR_LAYOUTS.get(data.dataset, cifar.CIFAR100)
        present = all(
            path.is_file() for paths in cifar.batch_files(root, layout).values() for path in paths
        )
    if present and data.prepared_arrays:
        return prepared.prepared_hash(root, data.resolution)
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
    if data.dataset in REAL_CIFAR:
        title = CIFAR_LAYOUTS[data.dataset].title
        return f"{title} not under {root} yet (downloaded on the first run, or set data.root)"
    if data.dataset == "tinyimagenet":
        return (
            f"no Tiny-ImageNet folder at {root} (expected train/ and val/ class folders: run "
            "`python -m bench data prepare tinyimagenet --root <tiny-imagenet-200>`)"
        )
    return f"no image folder at {root} (expected train/ and val/; set data.root)"
