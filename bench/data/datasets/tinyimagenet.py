"""Tiny-ImageNet (Le & Yang 2015, the CS231N release `tiny-imagenet-200`): 200 classes, 64 px.

Its train split is already `train/<wnid>/images/*.JPEG` (an image folder); its val split is one
folder `val/images/` plus `val/val_annotations.txt` (file, wnid, box). `arrange_val` moves each val
image into `val/<wnid>/`, once: rerun after an interruption, it finishes the job.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.datasets.base import register_dataset
from bench.data.datasets.imagefolder import ImageFolderFormat, check_folder
from bench.errors import DataError

ANNOTATIONS = "val_annotations.txt"


def needs_arranging(root: Path) -> bool:
    return (Path(root) / "val" / "images").is_dir()


def arrange_val(root: Path, log=print) -> Path:
    """Turn `val/images` + `val/val_annotations.txt` into `val/<wnid>/` class folders."""
    root = Path(root).expanduser()
    val = root / "val"
    if not needs_arranging(root):
        return root
    annotations = val / ANNOTATIONS
    if not annotations.is_file():
        raise DataError(
            f"Tiny-ImageNet val annotations not found: {annotations} (expected the "
            "tiny-imagenet-200 layout: val/images/ and val/val_annotations.txt)"
        )
    moves = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            if line.strip():
                raise DataError(
                    f"{annotations} line {number}: expected 'file<TAB>wnid<TAB>box', got {line!r}"
                )
            continue
        name, wnid = parts[0], parts[1]
        if "/" in name or "/" in wnid or name.startswith(".") or wnid.startswith("."):
            raise DataError(f"{annotations} line {number}: not a plain file or class name")
        moves.append((name, wnid))
    log(f"arranging {len(moves)} Tiny-ImageNet val images into class folders under {val}")
    for name, wnid in moves:
        source, target = val / "images" / name, val / wnid / name
        if source.is_file():
            target.parent.mkdir(exist_ok=True)
            os.replace(source, target)
        elif not target.is_file():
            raise DataError(f"Tiny-ImageNet val image listed in {annotations} is missing: {source}")
    left = [p.name for p in (val / "images").iterdir()]
    if left:
        raise DataError(
            f"Tiny-ImageNet val/images holds {len(left)} file(s) not in {ANNOTATIONS}, e.g. "
            f"{left[0]}; remove them"
        )
    (val / "images").rmdir()
    return root


@register_dataset("tinyimagenet")
class TinyImageNet(ImageFolderFormat):
    """200 classes (counted from the folders) of 64 px images; at 64 px (prepared as arrays)
    every backend serves it exactly."""

    title, order, resolution = "Tiny-ImageNet", 60, 64

    def fetch(self, data, root: Path, log=print) -> Path:
        arrange_val(root, log=log)
        return check_folder(root)

    def present(self, data, root: Path) -> bool:
        return super().present(data, root) and not needs_arranging(root)

    def absent_reason(self, data, root: Path) -> str:
        return (
            f"no Tiny-ImageNet folder at {root} (expected train/ and val/ class folders: run "
            "`python -m bench data prepare tinyimagenet --root <tiny-imagenet-200>`)"
        )
