"""Exact teacher-logit cache for CIFAR: every train image x its 162 augmentation variants.

The train augmentation is one of 9 x 9 crop offsets x 2 flips (bench.data.augment), and the teacher
is frozen in eval mode, so its logits for each (image, variant) never change: compute them once per
teacher and look them up by (index, dx, dy, flip) in every student run that shares the teacher.
Keyed by teacher sha256, dataset content hash, normalization, storage dtype and the precision
of the teacher forward.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.data.augment import (
    CIFAR100_NORMALIZATION,
    CROP_POSITIONS,
    PAD,
    Normalization,
    crop_flip,
    normalize,
)
from bench.files import atomic_write, quarantine
from bench.spec.keys import short_hash

VARIANTS = CROP_POSITIONS * CROP_POSITIONS * 2
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def variant_id(dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return (dy * CROP_POSITIONS + dx) * 2 + flip.long()


def variant_params(variant: int) -> tuple[int, int, bool]:
    flip = variant % 2
    dx = (variant // 2) % CROP_POSITIONS
    dy = variant // (2 * CROP_POSITIONS)
    return dx, dy, bool(flip)


def cache_key(
    teacher_sha: str,
    data_hash: str,
    dtype: str,
    precision: str = "fp32",
    stats: Normalization = CIFAR100_NORMALIZATION,
) -> str:
    return short_hash(
        {
            "teacher": teacher_sha,
            "data": data_hash,
            "dtype": dtype,
            "precision": precision,  # the teacher forward's autocast precision
            "normalize": [stats.mean, stats.std],
            "pad": PAD,
        }
    )


@torch.no_grad()
def compute_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    dtype: str,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 1024,
    stats: Normalization = CIFAR100_NORMALIZATION,
) -> torch.Tensor:
    """[N, 162, C] teacher logits of every variant of every uint8 image, stored as `dtype`."""
    model.eval()
    images = images.to(device)
    out = None
    for variant in range(VARIANTS):
        dx, dy, flip = variant_params(variant)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            n = len(chunk)
            view = crop_flip(
                chunk, torch.full((n,), dx), torch.full((n,), dy), torch.full((n,), flip)
            )
            autocast = torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
            )
            with autocast:
                logits = model(normalize(view, stats)).float()
            if out is None:
                out = torch.empty(
                    (len(images), VARIANTS, logits.shape[1]), dtype=DTYPES[dtype], device=device
                )
            out[start : start + n, variant] = logits.to(DTYPES[dtype])
    return out


class TeacherLogitCache:
    """Lookup of cached logits; rows are train-subset positions, addressed by file index."""

    def __init__(self, logits: torch.Tensor, file_index: torch.Tensor):
        self.logits = logits
        device = logits.device
        self.row_of = torch.full((int(file_index.max()) + 1,), -1, dtype=torch.int64, device=device)
        self.row_of[file_index.to(device)] = torch.arange(len(file_index), device=device)

    def lookup(
        self, indices: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor
    ) -> torch.Tensor:
        device = self.logits.device
        rows = self.row_of[indices.to(device)]
        variants = variant_id(dx.to(device), dy.to(device), flip.to(device))
        return self.logits[rows, variants].float()


class CachedTeacher:
    """Drop-in for the teacher forward in the train loop: (images, indices, epoch) -> logits.

    `variants(epoch, indices)` gives the (dx, dy, flip) each sample received: `Loaders.variants`.
    """

    def __init__(self, cache: TeacherLogitCache, variants):
        self.cache, self.variants = cache, variants

    def __call__(self, images: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        dx, dy, flip = self.variants(epoch, indices)
        return self.cache.lookup(indices, dx, dy, flip).to(images.device)


def _save_npy_atomic(array: torch.Tensor, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array.cpu().numpy())


def _open(path: Path, *, expected: int, log) -> torch.Tensor | None:
    """The memory-mapped cache file, or None where there is none; a file that fails to load or
    holds fewer images than `expected` is moved aside (it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # read-only memory map: nothing ever writes through it
            warnings.simplefilter("ignore", UserWarning)
            mapped = torch.from_numpy(np.load(path, mmap_mode="r"))
        if mapped.ndim != 3 or mapped.shape[0] < expected or mapped.shape[1] != VARIANTS:
            raise ValueError(f"shape {tuple(mapped.shape)}")
    except Exception as exc:  # truncated or damaged: numpy raises many kinds of errors
        moved = quarantine(path)
        log(f"warning: teacher cache {path} unreadable ({exc}); moved to {moved.name}, rebuilding")
        return None
    return mapped


def load_or_build(
    model: nn.Module,
    *,
    teacher_sha: str,
    data_hash: str,
    images: torch.Tensor,
    file_index: torch.Tensor,
    dtype: str,
    device: torch.device,
    workdir: Path,
    precision: str = "fp32",
    stats: Normalization = CIFAR100_NORMALIZATION,
    log=print,
) -> TeacherLogitCache:
    """The cache from <workdir>/teacher_cache (memory-mapped), built and stored on first use."""
    if dtype not in DTYPES:
        raise ValueError(f"teacher cache dtype '{dtype}': expected one of {', '.join(DTYPES)}")
    key = cache_key(teacher_sha, data_hash, dtype, precision, stats)
    path = Path(workdir) / "teacher_cache" / f"{key}.npy"
    mapped = _open(path, expected=len(file_index), log=log)
    if mapped is None:
        log(f"teacher cache: computing {len(images)} x {VARIANTS} variants ({dtype}) -> {path}")
        logits = compute_logits(
            model, images, dtype=dtype, device=device, precision=precision, stats=stats
        )
        _save_npy_atomic(logits, path)
        mapped = _open(path, expected=0, log=log)
    if device.type == "cuda":
        mapped = mapped.to(device)
    return TeacherLogitCache(mapped, file_index)
