"""A small learnable dataset written in CIFAR-100's exact on-disk format.

Each class has a smooth random colour pattern (a 4x4 grid upsampled to 32x32); an image is its
class pattern with a random brightness shift and pixel noise, so the class is recoverable from the
content (even after a 4-pixel crop shift) but not from any single pixel. With `overlap`, each
image also mixes in another class's pattern, so classes overlap and no model is perfect.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from bench.data.datasets import cifar
from bench.data.datasets.base import register_dataset
from methods.params import params_dataclass

Positive = Annotated[int, Field(ge=1)]

MARKER = "kdbench_synthetic.json"


@params_dataclass
class SyntheticConfig:
    """The generated dataset of `dataset: synthetic` (tests and the smoke demo)."""

    classes: Annotated[int, Field(ge=2)] = 10
    train_per_class: Positive = 100
    test_per_class: Positive = 20
    seed: int = 0
    noise: Annotated[float, Field(ge=0)] = 20.0
    # Each image mixes in another class's pattern with a weight drawn from U(0, overlap): above
    # 0.5 the other class dominates, so overlap > 0.5 puts a floor under the error of any model
    # ((overlap - 0.5) / overlap of the images), and classes are no longer trivially separable.
    overlap: Annotated[float, Field(ge=0, lt=1)] = 0.0

    def folder_name(self) -> str:
        name = (
            f"synthetic-c{self.classes}-tr{self.train_per_class}-te{self.test_per_class}"
            f"-s{self.seed}-n{self.noise:g}"
        )
        return name + (f"-o{self.overlap:g}" if self.overlap else "")


def _class_patterns(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(20, 235, size=(config.classes, 3, 4, 4)).astype(np.float32)
    up = torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(32, 32), mode="bilinear", align_corners=False
    )
    return up.numpy()


def _images(
    patterns: np.ndarray, labels: np.ndarray, noise: float, rng, overlap: float = 0.0
) -> np.ndarray:
    base = patterns[labels]
    if overlap:
        classes = len(patterns)
        other = (labels + 1 + rng.integers(0, classes - 1, size=len(labels))) % classes
        weight = rng.uniform(0, overlap, size=(len(labels), 1, 1, 1)).astype(np.float32)
        base = (1 - weight) * base + weight * patterns[other]
    brightness = rng.normal(0, 15, size=(len(labels), 1, 1, 1))
    pixels = base + brightness + rng.normal(0, noise, size=base.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def generate(root: Path, config: SyntheticConfig) -> Path:
    """Write the dataset under `root` (atomically: a temp folder renamed into place)."""
    root = Path(root)
    if (root / MARKER).is_file():
        return root
    rng = np.random.default_rng(config.seed)
    patterns = _class_patterns(config, rng)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        for split, per_class in (
            ("train", config.train_per_class),
            ("test", config.test_per_class),
        ):
            labels = np.tile(np.arange(config.classes), per_class)  # interleaved, like real files
            images = _images(patterns, labels, config.noise, rng, config.overlap)
            cifar.write_split(tmp, split, images, labels)
        cifar.write_meta(tmp, [f"class_{c:03d}" for c in range(config.classes)])
        (tmp / MARKER).write_text(json.dumps(asdict(config), sort_keys=True))
        try:
            os.replace(tmp, root)
        except OSError:  # another process won the race: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


@register_dataset("synthetic")
class Synthetic(cifar.CifarFormat):
    """`data.synthetic` configures it (classes, images per class, noise, overlap, seed)."""

    title, order = "synthetic data", 30

    def classes(self, data) -> int:
        return data.synthetic_config.classes

    def root(self, data, workdir: Path) -> Path:
        if data.root:
            return Path(data.root).expanduser()
        return Path(workdir) / "data" / data.synthetic_config.folder_name()

    def fetch(self, data, root: Path, log=print) -> Path:
        return generate(root, data.synthetic_config)

    def absent_reason(self, data, root: Path) -> str:
        return f"synthetic data not generated yet under {root} (made on the first run)"

    def hash_when_absent(self, data) -> str:
        """A pure function of its config: made and hashed in a temporary folder."""
        with tempfile.TemporaryDirectory(prefix="kdbench-synthetic-") as scratch:
            return self.content_hash(generate(Path(scratch) / "data", data.synthetic_config))
