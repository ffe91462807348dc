"""CIFAR-100 and CIFAR-10 in torchvision's on-disk format: pickled batches of uint8 rows.

CIFAR-100: `cifar-100-python/{train,test,meta}`, labels under `fine_labels`. CIFAR-10:
`cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`, labels under `labels`. One reader
serves both (`CifarLayout`), and `CifarFormat` is what every CIFAR-format dataset shares
(`data.dataset: cifar100`, `cifar10` here; `synthetic` in synthetic.py). Real files are checked
against torchvision's md5 sums (and downloaded where the network allows); generated files take
the same reader with `verify=False`.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.augment import Normalization
from bench.data.datasets.base import Dataset, register_dataset
from bench.errors import DataError

IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR variant keeps its batches and under which keys, as torchvision writes it."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    torchvision_class: str  # the torchvision.datasets class that downloads and md5-checks it


CIFAR100 = CifarLayout(
    "CIFAR-100", "cifar-100-python", ("train",), ("test",), "meta",
    "fine_labels", "fine_label_names", "CIFAR100",
)
CIFAR10 = CifarLayout(
    "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",), "batches.meta", "labels", "label_names", "CIFAR10",
)


@dataclass(frozen=True)
class ImageArrays:
    """A whole split in memory: uint8 images [N, 3, 32, 32] and int64 labels [N]."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def batch_files(root: Path, layout: CifarLayout = CIFAR100) -> dict[str, list[Path]]:
    """Every file of each split ('train', 'test', 'meta'), in the order the reader reads them."""
    base = Path(root) / layout.folder
    return {
        "train": [base / name for name in layout.train_files],
        "test": [base / name for name in layout.test_files],
        "meta": [base / layout.meta_file],
    }


def split_files(root: Path, layout: CifarLayout = CIFAR100) -> dict[str, Path]:
    """The first file of each split (the only one for CIFAR-100): its presence means the set is."""
    return {split: files[0] for split, files in batch_files(root, layout).items()}


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


def _unpickle(path: Path, layout: CifarLayout = CIFAR100) -> dict:
    what = layout.title
    if not path.is_file():
        raise DataError(
            f"{what} file not found: {path} (expected torchvision's {layout.folder} layout)"
        )
    try:
        with open(path, "rb") as f:
            return _DataOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refused "):
            raise DataError(
                f"{what} file holds code, not data: {path} ({exc}; expected only arrays, "
                "lists, strings and numbers); nothing from it was run"
            ) from None
        raise DataError(f"{what} file is corrupted: {path} (expected a python pickle)") from None
    except Exception as exc:  # a truncated or foreign file raises many kinds of errors
        raise DataError(
            f"{what} file is corrupted: {path} (expected a python pickle; {type(exc).__name__})"
        ) from None


def _torchvision_class(layout: CifarLayout):
    import torchvision.datasets

    return getattr(torchvision.datasets, layout.torchvision_class)


def verify_md5(root: Path, layout: CifarLayout = CIFAR100) -> None:
    """Check the real files against torchvision's published md5 sums."""
    from torchvision.datasets.utils import check_integrity

    reference = _torchvision_class(layout)
    base = Path(root) / reference.base_folder
    for name, md5 in reference.train_list + reference.test_list:
        if not check_integrity(str(base / name), md5):
            raise DataError(
                f"{layout.title} file failed its md5 check: {base / name} (expected md5 {md5}; "
                "delete it to download again)"
            )


def download(root: Path, layout: CifarLayout = CIFAR100) -> None:
    _torchvision_class(layout)(str(root), train=True, download=True)


def read_split(
    root: Path, split: str, verify: bool = True, layout: CifarLayout = CIFAR100
) -> ImageArrays:
    """Read `train` or `test` (all its batches, in order); `verify` checks torchvision's md5
    sums (off for generated data)."""
    files = batch_files(root, layout)
    if verify:
        verify_md5(root, layout)
    entries = [(path, _unpickle(path, layout)) for path in files[split]]
    meta = _unpickle(files["meta"][0], layout)
    try:
        names = tuple(meta[layout.names_key])
    except (KeyError, TypeError):
        raise DataError(
            f"{layout.title} file has unexpected content: {files['meta'][0]} "
            f"(expected the key '{layout.names_key}')"
        ) from None
    images, labels = [], []
    for path, entry in entries:
        try:
            data = np.asarray(entry["data"], dtype=np.uint8)
            batch_labels = np.asarray(entry[layout.label_key], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{layout.title} file has unexpected content: {path} "
                f"(expected keys 'data' and '{layout.label_key}')"
            ) from None
        if data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(batch_labels) != len(data):
            raise DataError(
                f"{layout.title} file has unexpected shape: {path} data {tuple(data.shape)} "
                f"labels {len(batch_labels)} (expected [N, {IMAGE_BYTES}] and N labels)"
            )
        if len(batch_labels) and (batch_labels.min() < 0 or batch_labels.max() >= len(names)):
            raise DataError(
                f"{layout.title} labels out of range in {path}: expected 0..{len(names) - 1}"
            )
        images.append(data)
        labels.append(batch_labels)
    data = np.concatenate(images) if len(images) > 1 else images[0]
    all_labels = np.concatenate(labels) if len(labels) > 1 else labels[0]
    return ImageArrays(data.reshape(-1, 3, 32, 32), all_labels, names)


def write_split(
    root: Path, split: str, images: np.ndarray, labels: np.ndarray, layout: CifarLayout = CIFAR100
) -> None:
    """Write one split in the exact on-disk format of the real files (its batches split evenly)."""
    paths = batch_files(root, layout)[split]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    rows = np.ascontiguousarray(images.reshape(len(images), IMAGE_BYTES), dtype=np.uint8)
    for number, (path, part) in enumerate(
        zip(paths, np.array_split(np.arange(len(labels)), len(paths)), strict=True), start=1
    ):
        entry = {
            "filenames": [f"image_{i:06d}.png" for i in part],
            "batch_label": f"{split}ing batch {number} of {len(paths)}",
            layout.label_key: [int(labels[i]) for i in part],
            "data": rows[part],
        }
        if layout is CIFAR100:
            entry["coarse_labels"] = [int(labels[i]) % 20 for i in part]
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=2)


def write_meta(root: Path, class_names: list[str], layout: CifarLayout = CIFAR100) -> None:
    path = batch_files(root, layout)["meta"][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {layout.names_key: class_names}
    if layout is CIFAR100:
        meta["coarse_label_names"] = [f"superclass_{i}" for i in range(20)]
    with open(path, "wb") as f:
        pickle.dump(meta, f, protocol=2)


def first_per_class(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` samples of every class, in file order (deterministic)."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:per_class]] = True
    return np.flatnonzero(keep)


HOLD_OUT_SALT = 0x6B6462656E6368  # "kdbench": the held-out choice depends on nothing else


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a fixed, well-spread hash of each integer."""
    z = values.astype(np.uint64) + np.uint64(HOLD_OUT_SALT)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def held_out_per_class(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of `per_class` samples of every class chosen by a hash of their index: the same
    for every method, seed, backend and resume, and spread over the file (not its first ones)."""
    if per_class is None:
        return np.zeros(0, dtype=np.int64)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if per_class >= len(members):
            raise ValueError(
                f"data.val_per_class: {per_class} of class {c}'s {len(members)} train images "
                "would leave none to train on"
            )
        chosen.append(members[np.argsort(_mix64(members), kind="stable")[:per_class]])
    return np.sort(np.concatenate(chosen))


class CifarFormat(Dataset):
    """An array dataset on disk in torchvision's CIFAR format (`layout`)."""

    layout = CIFAR100
    published_checksums = False  # torchvision's md5 sums of the real files

    def present(self, data, root: Path) -> bool:
        return all(path.is_file() for path in self.files(root))

    def files(self, root: Path) -> list[Path]:
        return [path for paths in batch_files(root, self.layout).values() for path in paths]

    def content_hash(self, root: Path) -> str:
        """sha256 over the split files: two datasets with the same bytes get the same cells."""
        digest = hashlib.sha256()
        for path in self.files(root):
            if not path.is_file():
                raise DataError(
                    f"{self.layout.title} file not found: {path} (expected torchvision's layout)"
                )
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()[:16]

    def read(self, root: Path, split: str, verify: bool) -> ImageArrays:
        return read_split(root, split, verify=verify and self.published_checksums,
                          layout=self.layout)


class _RealCifar(CifarFormat):
    """Downloaded by torchvision where the network allows, md5-checked."""

    published_checksums = True

    def fetch(self, data, root: Path, log=print) -> Path:
        if not split_files(root, self.layout)["train"].is_file():
            try:
                download(root, self.layout)
            except Exception as exc:
                raise DataError(
                    f"{self.layout.title} not found under {root} and download failed "
                    f"({type(exc).__name__}); expected torchvision's {self.layout.folder} folder "
                    "there (set data.root)"
                ) from None
        return root

    def download_url(self) -> str:
        return _torchvision_class(self.layout).url

    def absent_reason(self, data, root: Path) -> str:
        return (f"{self.layout.title} not under {root} yet (downloaded on the first run, or set "
                "data.root)")


@register_dataset("cifar100")
class Cifar100(_RealCifar):
    title, order, num_classes, layout = "CIFAR-100", 10, 100, CIFAR100


@register_dataset("cifar10")
class Cifar10(_RealCifar):
    title, order, num_classes, layout = "CIFAR-10", 20, 10, CIFAR10
    # per-channel mean and std of CIFAR-10's 50,000 train images on [0, 1] pixels
    normalization = Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
