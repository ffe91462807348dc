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

import numpy as np
import torch

from bench.data.datasets import cifar
from bench.spec import SyntheticConfig

__all__ = ["SyntheticConfig", "generate"]

MARKER = "kdbench_synthetic.json"


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
