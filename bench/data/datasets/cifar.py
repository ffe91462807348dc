"""CIFAR-100 in torchvision's on-disk format (`cifar-100-python/{train,test,meta}` pickles).

Real files are checked against torchvision's md5 sums (and downloaded where the network allows);
generated files (bench.data.datasets.synthetic) take the same reader with `verify_md5=False`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import DataError

FOLDER = "cifar-100-python"
IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class ImageArrays:
    """A whole split in memory: uint8 images [N, 3, 32, 32] and int64 labels [N]."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def split_files(root: Path) -> dict[str, Path]:
    base = Path(root) / FOLDER
    return {"train": base / "train", "test": base / "test", "meta": base / "meta"}


# What CIFAR's pickles hold besides dicts, lists, strings, bytes and numbers (pickle opcodes):
# numpy arrays (numpy 1 and 2 module paths) and, in protocol-2 files written by Python 3, bytes
# rebuilt through _codecs.encode. Nothing else may be loaded, so a data file runs no code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(
            f"CIFAR-100 file not found: {path} (expected torchvision's {FOLDER} layout)"
        )
    try:
        with open(path, "rb") as f:
            return _DataOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refused "):
            raise DataError(
                f"CIFAR-100 file holds code, not data: {path} ({exc}; expected only arrays, "
                "lists, strings and numbers); nothing from it was run"
            ) from None
        raise DataError(f"CIFAR-100 file is corrupted: {path} (expected a python pickle)") from None
    except Exception as exc:  # a truncated or foreign file raises many kinds of errors
        raise DataError(
            f"CIFAR-100 file is corrupted: {path} (expected a python pickle; {type(exc).__name__})"
        ) from None


def verify_md5(root: Path) -> None:
    """Check the real CIFAR-100 files against torchvision's published md5 sums."""
    from torchvision.datasets import CIFAR100
    from torchvision.datasets.utils import check_integrity

    base = Path(root) / CIFAR100.base_folder
    for name, md5 in CIFAR100.train_list + CIFAR100.test_list:
        if not check_integrity(str(base / name), md5):
            raise DataError(
                f"CIFAR-100 file failed its md5 check: {base / name} (expected md5 {md5}; "
                "delete it to download again)"
            )


def download(root: Path) -> None:
    from torchvision.datasets import CIFAR100

    CIFAR100(str(root), train=True, download=True)


def read_split(root: Path, split: str, verify: bool = True) -> ImageArrays:
    """Read `train` or `test`; `verify` checks torchvision's md5 sums (off for generated data)."""
    files = split_files(root)
    if verify:
        verify_md5(root)
    entry = _unpickle(files[split])
    meta = _unpickle(files["meta"])
    try:
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
        names = tuple(meta["fine_label_names"])
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"CIFAR-100 file has unexpected content: {files[split]} "
            "(expected keys 'data' and 'fine_labels', and 'fine_label_names' in meta)"
        ) from None
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(labels) != len(data):
        raise DataError(
            f"CIFAR-100 file has unexpected shape: {files[split]} data {tuple(data.shape)} "
            f"labels {len(labels)} (expected [N, {IMAGE_BYTES}] and N labels)"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(
            f"CIFAR-100 labels out of range in {files[split]}: expected 0..{len(names) - 1}"
        )
    return ImageArrays(data.reshape(-1, 3, 32, 32), labels, names)


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one split in the exact on-disk format of the real files."""
    path = split_files(root)[split]
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "filenames": [f"image_{i:06d}.png" for i in range(len(labels))],
        "batch_label": f"{split}ing batch 1 of 1",
        "fine_labels": [int(y) for y in labels],
        "coarse_labels": [int(y) % 20 for y in labels],
        "data": np.ascontiguousarray(images.reshape(len(images), IMAGE_BYTES), dtype=np.uint8),
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_meta(root: Path, class_names: list[str]) -> None:
    path = split_files(root)["meta"]
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse = [f"superclass_{i}" for i in range(20)]
    with open(path, "wb") as f:
        pickle.dump({"fine_label_names": class_names, "coarse_label_names": coarse}, f, protocol=2)


def first_per_class(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` samples of every class, in file order (deterministic)."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:per_class]] = True
    return np.flatnonzero(keep)
