"""Backend `ffcv`: `.beton` files written once (temp file + rename), read at memory speed.

CIFAR: a .beton holds the whole split as raw 32x32 RGB (exact), its label and its index in the
split file. FFCV only decodes (and moves to the device on CUDA); the order is the shared
`epoch_order` and the shared `augment_batch` augments in torch, so a (seed, epoch) gives the same
batches as every other backend. FFCV's random transforms are not used: their per-thread RNG is
unseeded. ImageNet-style folders use FFCV's JPEG decoders (RandomResizedCrop / CenterCrop 224).

Files live at `<workdir>/ffcv/<content_hash>-{train,test}[-<options>].beton`: the same data gives
the same file name, so every run and subset reuses them. A file is checked against its own header
before FFCV opens it (FFCV maps it into memory and would read past the end of a truncated file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from bench.data.augment import Normalization, array_family, epoch_order, normalize
from bench.data.backends.base import Backend, register_backend
from bench.data.datasets.imagefolder import SPLIT_FOLDERS, image_extensions
from bench.data.folder_transforms import RESIZE, RESOLUTION, imagenet_normalize, shared_flip
from bench.data.sharding import WHOLE, Shard
from bench.data.strong_augment import train_batch
from bench.errors import DataError, SpecError
from bench.files import atomic_path
from bench.locks import file_lock

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]

SPLITS = ("train", "test")
MIN_PAGE_SIZE = 1 << 21  # FFCV's smallest page (2 MiB): tiny files are still several MB
_NON_ALLOCATING_TYPE_IDS = (0, 1)  # FloatField, IntField: stored in the metadata table only
_ALLOC_ENTRY_BYTES = 24  # ffcv.types.ALLOC_TABLE_TYPE: sample_id, ptr, size (3 x <u8)


def import_ffcv():
    """The ffcv package, or a one-line error saying how to install it.

    Importing ffcv sets torch's intra-op threads to 1 (its Compiler does so at import): the count
    the process had is put back.
    """
    threads = torch.get_num_threads()
    try:
        import ffcv
    except ImportError as exc:
        raise SpecError(
            f"data.backend 'ffcv' needs the ffcv package ({exc}); install it with "
            "apt-get install libopencv-dev libturbojpeg0-dev pkg-config && pip install -e '.[ffcv]'"
        ) from None
    finally:
        torch.set_num_threads(threads)
    return ffcv


def beton_path(workdir: Path, content_hash: str, split: str, options: str = "") -> Path:
    """`<workdir>/ffcv/<content_hash>-<split>[-<options>].beton`."""
    suffix = f"-{options}" if options else ""
    return Path(workdir) / "ffcv" / f"{content_hash}-{split}{suffix}.beton"


# ---------------------------------------------------------------------------------------------
# Checking a file against its header


def beton_sizes(path: Path) -> tuple[int, int, int]:
    """(expected bytes from the header, actual bytes, samples) of a .beton; DataError if unreadable.

    Layout: header | field descriptors | metadata table (one row per sample) | data pages |
    allocation table (one entry per sample and allocating field), which ends the file.
    """
    import_ffcv()
    from ffcv.types import CURRENT_VERSION, FieldDescType, HeaderType, get_metadata_type

    path = Path(path)
    if not path.is_file():
        raise DataError(f"FFCV file not found: {path} (expected a .beton written by kdbench)")
    actual = path.stat().st_size
    if actual < HeaderType.itemsize:
        raise DataError(
            f"FFCV file is truncated: {path} (expected at least {HeaderType.itemsize} bytes "
            f"of header, found {actual})"
        )
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if int(header["version"]) != CURRENT_VERSION:
        raise DataError(
            f"FFCV file has format version {int(header['version'])}: {path} "
            f"(expected {CURRENT_VERSION}; delete it to write it again)"
        )
    num_fields, num_samples = int(header["num_fields"]), int(header["num_samples"])
    table_ptr = int(header["alloc_table_ptr"])
    descriptors_end = HeaderType.itemsize + num_fields * FieldDescType.itemsize
    if actual < descriptors_end:
        raise DataError(
            f"FFCV file is truncated: {path} (expected at least {descriptors_end} bytes "
            f"of header and field descriptors, found {actual})"
        )
    if table_ptr == 0:
        raise DataError(
            f"FFCV file was never finished: {path} (its header has no allocation table; "
            "delete it to write it again)"
        )
    descriptors = np.fromfile(
        path, dtype=FieldDescType, count=num_fields, offset=HeaderType.itemsize
    )
    allocating = int(sum(int(t) not in _NON_ALLOCATING_TYPE_IDS for t in descriptors["type_id"]))
    try:
        from ffcv.types import get_handlers

        row_bytes = get_metadata_type(get_handlers(descriptors)).itemsize
    except Exception:  # an unknown field type: FFCV cannot read it either
        raise DataError(
            f"FFCV file has unknown field types: {path} (expected image, label and index fields)"
        ) from None
    metadata_end = descriptors_end + num_samples * row_bytes
    expected = table_ptr + num_samples * allocating * _ALLOC_ENTRY_BYTES
    if table_ptr < metadata_end:
        raise DataError(
            f"FFCV file has an inconsistent header: {path} (allocation table at byte {table_ptr}, "
            f"before the end of the metadata table at {metadata_end})"
        )
    return expected, actual, num_samples


def check_beton(path: Path, num_samples: int | None = None) -> int:
    """The number of samples of a whole file; else DataError (one line: path, expected vs actual
    size). FFCV itself would map a truncated file and read past its end."""
    path = Path(path)
    expected, actual, samples = beton_sizes(path)
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise DataError(
            f"FFCV file is {state}: {path} (expected {expected} bytes from its header, "
            f"found {actual}; delete it to write it again)"
        )
    if num_samples is not None and samples != num_samples:
        raise DataError(
            f"FFCV file holds {samples} samples: {path} (expected {num_samples}; "
            "delete it to write it again)"
        )
    from ffcv.types import ALLOC_TABLE_TYPE, HeaderType

    table_ptr = int(np.fromfile(path, dtype=HeaderType, count=1)[0]["alloc_table_ptr"])
    table = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table_ptr)
    if len(table) and int((table["ptr"] + table["size"]).max()) > table_ptr:
        raise DataError(
            f"FFCV file has data pointers past its data region: {path} "
            f"(expected all below byte {table_ptr}; delete it to write it again)"
        )
    return samples


def beton_is_whole(path: Path, num_samples: int | None = None) -> bool:
    try:
        check_beton(path, num_samples)
    except DataError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Writing


class _CifarRecords:
    """Indexable (image HWC uint8, label, index) records for FFCV's writer."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images_hwc, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), int(i)


def _as_cifar_arrays(arrays) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(arrays, "images") and hasattr(arrays, "labels"):
        images, labels = arrays.images, arrays.labels
    else:
        images, labels = arrays
    images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    labels = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    square = images.ndim == 4 and images.shape[1] == 3 and images.shape[2] == images.shape[3]
    if images.dtype != np.uint8 or not square:
        raise DataError(
            f"CIFAR-format images for FFCV: expected uint8 [N, 3, R, R], got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if len(labels) != len(images):
        raise DataError(f"CIFAR labels for FFCV: expected {len(images)}, got {len(labels)}")
    return images, labels.astype(np.int64)


def _write_atomically(path: Path, fields: dict, records, *, num_workers: int, page_size: int):
    """Write with FFCV's DatasetWriter into a temp file beside `path`, then rename into place."""
    from ffcv.writer import DatasetWriter

    path = Path(path)
    with atomic_path(path) as tmp:
        writer = DatasetWriter(str(tmp), fields, page_size=page_size, num_workers=num_workers)
        writer.from_indexed_dataset(records)
        check_beton(tmp, len(records))
    return path


def write_cifar_beton(arrays, path: Path, *, num_workers: int = -1) -> Path:
    """Write one CIFAR split as a .beton: raw 32x32 RGB (exact), int label, int file index.

    `arrays` is a `cifar.ImageArrays` or an (images uint8 [N,3,32,32], labels [N]) pair, numpy or
    torch. The file appears at `path` only when whole (temp file + os.replace). FFCV's writer
    shows a progress bar. `num_workers` < 1 means one writer process per CPU.
    """
    import_ffcv()
    from ffcv.fields import IntField, RGBImageField

    images, labels = _as_cifar_arrays(arrays)
    records = _CifarRecords(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels)
    fields = {"image": RGBImageField(write_mode="raw"), "label": IntField(), "index": IntField()}
    return _write_atomically(
        path, fields, records, num_workers=num_workers, page_size=MIN_PAGE_SIZE
    )


def ensure_beton(
    path: Path, write: Callable[[Path], Path], *, num_samples: int | None = None, repair: bool
) -> Path:
    """Reuse a whole file at `path`, write a missing one (once, under a lock).

    A damaged file is rewritten when `repair` (what `bench data prepare` does), else it raises
    the one-line DataError: a training run never guesses which copy of the data it reads.
    """
    path = Path(path)
    if path.is_file() and not repair:
        check_beton(path, num_samples)
        return path
    with file_lock(path.with_name(f".{path.name}.lock")):
        if path.is_file():
            if beton_is_whole(path, num_samples):
                return path
            if not repair:
                check_beton(path, num_samples)
        return write(path)


def ensure_cifar_betons(
    content_hash: str,
    workdir: Path,
    read: Callable[[str], object],
    *,
    repair: bool = False,
) -> dict[str, Path]:
    """The train and test .beton files of array splits (the whole splits `read` returns: a
    CIFAR-format dataset's files, a prepared image folder), written on first use."""
    import_ffcv()
    paths = {}
    for split in SPLITS:

        def write(target: Path, split=split) -> Path:
            return write_cifar_beton(read(split), target)

        path = beton_path(workdir, content_hash, split)
        paths[split] = ensure_beton(path, write, repair=repair)
    return paths


# ---------------------------------------------------------------------------------------------
# Reading


class FfcvLoader:
    """Batches of (images float [B,3,H,W], labels int64, indices int64) from a .beton.

    `file_index[p]` is the row of position p in the file; the train order of an epoch is
    `epoch_order(seed, epoch, n)` over positions, the test order is position order. `transform`
    turns the decoded uint8 batch into the float batch, given the epoch and the file indices.
    Train batches report file indices; test batches report positions (as every backend does).

    FFCV sets torch's intra-op thread count to its own decoding thread count, process-wide, at
    every epoch; `num_workers` < 1 takes torch's current count, so training keeps its threads.
    """

    def __init__(
        self,
        path: Path,
        file_index,
        *,
        decoder,
        transform: Transform,
        batch_size: int,
        seed: int,
        train: bool,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
        file_samples: int | None = None,
        shard: Shard = WHOLE,
    ):
        import_ffcv()
        from ffcv.fields.decoders import IntDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

        self.path = Path(path)
        samples = check_beton(self.path, file_samples)
        self.device = torch.device(device)
        self.batch_size, self.seed, self.train = batch_size, seed, train
        self.transform = transform
        self.file_index = np.asarray(file_index, dtype=np.int64)
        if (
            len(self.file_index)
            and not 0 <= self.file_index.min() <= self.file_index.max() < samples
        ):
            raise DataError(
                f"FFCV file holds {samples} samples: {self.path} (expected rows 0.."
                f"{self.file_index.max()}; delete it to write it again)"
            )
        self.shard = shard
        # this rank's positions, in the order its batches visit them (test: file order)
        self.positions = torch.as_tensor(
            shard.concat(np.arange(len(self.file_index)), batch_size), device=self.device
        )
        to_device = [ToDevice(self.device, non_blocking=True)] if self.device.type == "cuda" else []
        pipelines = {
            "image": [decoder, ToTensor(), ToTorchImage(), *to_device],
            "label": [IntDecoder(), ToTensor(), *to_device],
            "index": [IntDecoder(), ToTensor(), *to_device],
        }
        self._loader = Loader(
            str(self.path),
            batch_size=batch_size // shard.world,  # a global batch's part (sharding.py)
            num_workers=num_workers if num_workers > 0 else torch.get_num_threads(),
            os_cache=True,
            order=OrderOption.SEQUENTIAL,
            seed=seed,  # FFCV draws from numpy's global RNG when it gets none
            indices=self.file_index,
            pipelines=pipelines,
            drop_last=False,
        )

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.file_index)

    def _visit(self, rows: np.ndarray) -> None:
        # FFCV's sequential order visits `traversal_order.indices` as given; replacing them per
        # epoch keeps one compiled pipeline (a new Loader per epoch would compile again).
        from ffcv.traversal_order import Sequential

        order = self._loader.traversal_order
        if not isinstance(order, Sequential):
            raise TypeError(f"expected FFCV's Sequential traversal order, got {type(order)}")
        order.indices = rows

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n = self.num_samples
        if self.train:
            order = epoch_order(self.seed, epoch, n).numpy()
        else:
            order = np.arange(n)
        self._visit(self.file_index[self.shard.concat(order, self.batch_size)])
        batches = iter(self._loader)
        start = 0
        try:
            for images, labels, rows in batches:
                b = len(labels)
                rows = rows.view(-1).clone()  # FFCV reuses its buffers; the transform copies
                out = self.transform(images, epoch, rows)
                indices = rows if self.train else self.positions[start : start + b]
                start += b
                yield out, labels.view(-1).clone(), indices
        finally:
            batches.close()


def _cifar_transform(
    seed: int, augment: bool | str, stats: Normalization, views: int = 1
) -> Transform:
    family = array_family(augment)

    def transform(images: torch.Tensor, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        if family:
            return train_batch(images, seed, epoch, rows, stats, family, views)
        return normalize(images, stats)

    return transform


def make_ffcv_loaders(
    splits,
    *,
    workdir: Path,
    dataset: str,
    batch_size: int,
    test_batch_size: int,
    seed: int,
    augment: bool | str,
    num_workers: int,
    device,
    views: int = 1,
    shard: Shard = WHOLE,
) -> tuple[FfcvLoader, FfcvLoader]:
    """CIFAR train/test loaders over the split files' .beton copies (written on first use)."""
    import_ffcv()
    from ffcv.fields.decoders import SimpleRGBImageDecoder

    paths = ensure_cifar_betons(splits.content_hash, workdir, splits.read_whole)
    test_index = splits.test_index
    loaders = []
    for split, file_index, batch, train in (
        ("train", splits.train_index, batch_size, True),
        ("test", test_index, test_batch_size, False),
    ):
        loaders.append(
            FfcvLoader(
                paths[split],
                file_index.numpy(),
                decoder=SimpleRGBImageDecoder(),
                transform=_cifar_transform(seed, augment if train else False, splits.normalization,
                                           views if train else 1),
                batch_size=batch,
                seed=seed,
                train=train,
                device=device,
                num_workers=num_workers,
                shard=shard,
            )
        )
    return loaders[0], loaders[1]


# ---------------------------------------------------------------------------------------------
# ImageNet-layout folders: JPEG in the file, FFCV's crop decoders on the way out

# longest side stored (RandomResizedCrop then reads from it) and JPEG quality: the spec's
# FFCV stores an image folder as JPEGs (longest side, quality) decoded with OpenCV: other pixels
# than torchvision's PIL pipeline, so part of the data identity of those cells
IMAGENET_MAX_RESOLUTION = 512
IMAGENET_JPEG_QUALITY = 90


class _FolderRecords:
    """Indexable (image HWC uint8, label, index) records of an image folder split."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as handle:
            return np.asarray(handle.convert("RGB")), int(label), int(i)


def _page_size(max_resolution: int) -> int:
    raw = 3 * max_resolution * max_resolution  # the largest image the writer can store
    return max(MIN_PAGE_SIZE, 1 << (raw - 1).bit_length())


def write_imagefolder_beton(
    folder: Path,
    path: Path,
    *,
    max_resolution: int = IMAGENET_MAX_RESOLUTION,
    jpeg_quality: int = IMAGENET_JPEG_QUALITY,
    num_workers: int = -1,
) -> Path:
    """Write one split folder (`<folder>/<class>/*`) as a .beton of JPEGs, longest side at most
    `max_resolution`, with int label and int index (torchvision ImageFolder's order)."""
    import_ffcv()
    from ffcv.fields import IntField, RGBImageField
    from torchvision.datasets.folder import find_classes, make_dataset

    _, class_to_idx = find_classes(str(folder))
    samples = make_dataset(str(folder), class_to_idx, extensions=image_extensions())
    fields = {
        "image": RGBImageField(
            write_mode="jpg", max_resolution=max_resolution, jpeg_quality=jpeg_quality
        ),
        "label": IntField(),
        "index": IntField(),
    }
    return _write_atomically(
        path,
        fields,
        _FolderRecords(samples),
        num_workers=num_workers,
        page_size=_page_size(max_resolution),
    )


def imagefolder_options(max_resolution: int, jpeg_quality: int) -> str:
    return f"r{max_resolution}-q{jpeg_quality}"


def ensure_imagefolder_betons(
    root: Path,
    content_hash: str,
    workdir: Path,
    *,
    max_resolution: int = IMAGENET_MAX_RESOLUTION,
    jpeg_quality: int = IMAGENET_JPEG_QUALITY,
    repair: bool = False,
) -> dict[str, Path]:
    """The train and test (val/) .beton files of an image folder, written on first use."""
    import_ffcv()
    options = imagefolder_options(max_resolution, jpeg_quality)
    paths = {}
    for split in SPLITS:

        def write(target: Path, split=split) -> Path:
            return write_imagefolder_beton(
                Path(root) / SPLIT_FOLDERS[split],
                target,
                max_resolution=max_resolution,
                jpeg_quality=jpeg_quality,
            )

        path = beton_path(workdir, content_hash, split, options)
        paths[split] = ensure_beton(path, write, repair=repair)
    return paths


def _imagenet_transform(seed: int, augment: bool) -> Transform:
    def transform(images: torch.Tensor, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        if augment:
            images = shared_flip(images, seed, epoch, rows)
        return imagenet_normalize(images)

    return transform


def make_ffcv_imagefolder_loaders(
    root: Path,
    content_hash: str,
    train_keep: np.ndarray,
    test_keep: np.ndarray,
    *,
    workdir: Path,
    batch_size: int,
    test_batch_size: int,
    seed: int,
    augment: bool,
    num_workers: int,
    device,
    shard: Shard = WHOLE,
) -> tuple[FfcvLoader, FfcvLoader]:
    """Train: FFCV's RandomResizedCrop 224 (its own RNG) + the shared flip; test: CenterCrop 224
    of ratio 224/256 (= Resize 256 + CenterCrop 224); both normalized with ImageNet mean/std."""
    import_ffcv()
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder

    paths = ensure_imagefolder_betons(root, content_hash, workdir)
    size = (RESOLUTION, RESOLUTION)
    loaders = []
    for split, keep, batch, train in (
        ("train", train_keep, batch_size, True),
        ("test", test_keep, test_batch_size, False),
    ):
        if train and augment:
            decoder = RandomResizedCropRGBImageDecoder(size)
        else:
            decoder = CenterCropRGBImageDecoder(size, ratio=RESOLUTION / RESIZE)
        loaders.append(
            FfcvLoader(
                paths[split],
                keep,
                decoder=decoder,
                transform=_imagenet_transform(seed, augment and train),
                batch_size=batch,
                seed=seed,
                train=train,
                device=device,
                num_workers=num_workers,
                shard=shard,
            )
        )
    return loaders[0], loaders[1]


@register_backend("ffcv")
class FfcvBackend(Backend):
    """.beton files written once, read at memory speed: array data exactly (raw pixels, the
    shared order and augmentation), image folders through FFCV's JPEG decoders."""

    order, serves_folders = 30, True
    pixel_pipeline = (f"ffcv-jpeg-r{IMAGENET_MAX_RESOLUTION}-q{IMAGENET_JPEG_QUALITY}-opencv")

    def array_loaders(self, splits, *, workdir, dataset, batch_size, test_batch_size, seed,
                      augment, num_workers, device, views=1, shard=WHOLE):
        return make_ffcv_loaders(splits, workdir=workdir, dataset=dataset, batch_size=batch_size,
                                 test_batch_size=test_batch_size, seed=seed, augment=augment,
                                 num_workers=num_workers, device=device, views=views,
                                 shard=shard)

    def folder_loaders(self, splits, *, workdir, batch_size, test_batch_size, seed, augment,
                       num_workers, device, shard=WHOLE):
        return make_ffcv_imagefolder_loaders(
            splits.root, splits.content_hash, splits.train_keep, splits.test_keep,
            workdir=workdir, batch_size=batch_size, test_batch_size=test_batch_size, seed=seed,
            augment=augment, num_workers=num_workers, device=device, shard=shard)

    def prepare_arrays(self, splits, workdir: Path) -> list[Path]:
        return list(ensure_cifar_betons(splits.content_hash, workdir, splits.read_whole,
                                        repair=True).values())

    def prepare_folder(self, root: Path, content_hash: str, workdir: Path) -> list[Path]:
        return list(ensure_imagefolder_betons(root, content_hash, workdir, repair=True).values())
