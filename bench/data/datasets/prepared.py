"""Small image folders prepared once into CIFAR-format arrays, so every backend serves them.

Policy for images of any size: the shorter side is resized to the resolution (PIL bilinear with
antialiasing), then the centre square is cropped; an image already at the resolution is kept as
is. This happens once, at preparation, never per step. The arrays (uint8 [N, 3, R, R], labels)
and the train split's per-channel mean and std are stored under
`<workdir>/prepared/<folder hash>-r<R>/`, found again by the folder's content hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.augment import Normalization
from bench.data.datasets.cifar import ImageArrays
from bench.data.datasets.imagefolder import folder_hash, read_folder
from bench.errors import DataError
from bench.files import atomic_path, atomic_write_text
from bench.locks import file_lock

POLICY = "shorter side to R (PIL bilinear, antialiased), centre crop R x R"
SPLITS = ("train", "test")


def prepared_hash(root: Path, resolution: int) -> str:
    """The content hash of a prepared folder: its files, the resolution and the resize policy."""
    key = f"{folder_hash(root)}\t{resolution}\t{POLICY}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _pixels(path: str, resolution: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            image = handle.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"image file cannot be read: {path} ({type(exc).__name__})") from None
    if image.size != (resolution, resolution):
        scale = resolution / min(image.size)
        size = (max(resolution, round(image.width * scale)),
                max(resolution, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _statistics(images: np.ndarray, chunk: int = 4096) -> Normalization:
    """Per-channel mean and std on [0, 1], accumulated in float64 a chunk at a time (a whole
    Tiny-ImageNet train split in float64 would take ~10 GB)."""
    total = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, len(images), chunk):
        pixels = images[start : start + chunk].astype(np.float64) / 255.0
        total += pixels.sum(axis=(0, 2, 3))
        squares += (pixels**2).sum(axis=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def prepared_folder(root: Path, resolution: int, workdir: Path, log=print) -> Path:
    """The folder of `root`'s prepared arrays at `resolution`, made on first use (once, under a
    lock; each file written atomically, the marker `meta.json` last)."""
    target = Path(workdir) / "prepared" / f"{prepared_hash(root, resolution)}-r{resolution}"
    if (target / "meta.json").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with file_lock(target / ".lock"):
        if (target / "meta.json").is_file():
            return target
        stats = None
        listed = {split: read_folder(root, split) for split in SPLITS}
        classes = listed["train"][1]
        if listed["test"][1] != classes:
            only = sorted(set(listed["test"][1]) ^ set(classes))
            raise DataError(
                f"image folder {root}: train/ and val/ hold different class folders (e.g. "
                f"{only[0] if only else 'their order'}); expected the same classes in both"
            )
        for split in SPLITS:
            samples = listed[split][0]
            log(f"preparing {root} {split}: {len(samples)} images at {resolution} px")
            images = np.empty((len(samples), 3, resolution, resolution), dtype=np.uint8)
            for i, (path, _) in enumerate(samples):
                images[i] = _pixels(path, resolution)
            labels = np.array([label for _, label in samples], dtype=np.int64)
            for name, array in (("images", images), ("labels", labels)):
                with atomic_path(target / f"{split}_{name}.npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, array)
            if split == "train":
                stats = _statistics(images)
        meta = {
            "classes": classes,
            "mean": stats.mean,
            "std": stats.std,
            "resolution": resolution,
            "policy": POLICY,
            "folder_hash": folder_hash(root),
        }
        atomic_write_text(target / "meta.json", json.dumps(meta, indent=1))
    return target


@dataclass(frozen=True)
class PreparedFolder:
    folder: Path

    @property
    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text())

    @property
    def normalization(self) -> Normalization:
        meta = self.meta
        return Normalization(tuple(meta["mean"]), tuple(meta["std"]))

    def read(self, split: str) -> ImageArrays:
        """A whole split (`train` or `test`), memory-mapped."""
        try:
            images = np.load(self.folder / f"{split}_images.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(self.folder / f"{split}_labels.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"prepared arrays unreadable in {self.folder} ({exc}); delete the folder to "
                "prepare it again"
            ) from None
        return ImageArrays(images, labels, tuple(self.meta["classes"]))
