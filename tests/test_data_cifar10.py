"""CIFAR-10 in torchvision's layout (five train batches, test_batch, batches.meta) is read by the
CIFAR reader, its real files md5-checked, and normalized with its own mean and std."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.augment import CIFAR100_NORMALIZATION, normalize
from bench.data.datasets import cifar
from bench.data.datasets.base import dataset_named
from bench.data.datasets.registry import content_hash
from bench.engine.teacher_cache import cache_key
from bench.errors import DataError
from bench.spec import DataSpec

NAMES = [f"class_{c}" for c in range(10)]


def write_cifar10(root, per_class: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = {split: np.tile(np.arange(10), n) for split, n in (("train", per_class), ("test", 2))}
    images = {
        split: rng.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8)
        for split, y in labels.items()
    }
    for split in ("train", "test"):
        cifar.write_split(root, split, images[split], labels[split], layout=cifar.CIFAR10)
    cifar.write_meta(root, NAMES, layout=cifar.CIFAR10)
    return images, labels


def test_the_cifar10_layout_is_read_batch_after_batch(tmp_path):
    images, labels = write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"
    ]
    train = cifar.read_split(tmp_path, "train", verify=False, layout=cifar.CIFAR10)
    assert np.array_equal(train.images, images["train"]) and train.class_names == tuple(NAMES)
    assert np.array_equal(train.labels, labels["train"]) and train.num_classes == 10
    test = cifar.read_split(tmp_path, "test", verify=False, layout=cifar.CIFAR10)
    assert np.array_equal(test.images, images["test"])
    # every batch counts in the content hash
    before = content_hash(tmp_path, "cifar10")
    with open(folder / "data_batch_5", "ab") as f:
        f.write(b"\0")
    assert content_hash(tmp_path, "cifar10") != before


def test_real_cifar10_files_are_md5_checked(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match=r"CIFAR-10 file failed its md5 check: .*data_batch_1 "
                       r"\(expected md5 c99cafc152244af753f735de768cd75f"):
        cifar.read_split(tmp_path, "train", verify=True, layout=cifar.CIFAR10)


def test_cifar10_is_normalized_with_its_own_statistics():
    stats = dataset_named("cifar10").normalization
    assert stats != CIFAR100_NORMALIZATION and DataSpec(dataset="cifar10").num_classes == 10
    image = torch.full((1, 3, 2, 2), 128, dtype=torch.uint8)
    expected = (128 / 255 - torch.tensor(stats.mean)) / torch.tensor(stats.std)
    assert torch.allclose(normalize(image, stats)[0, :, 0, 0], expected)
    # a teacher-logit cache is never shared between normalizations
    assert cache_key("t", "d", "float16", "fp32", stats) != cache_key("t", "d", "float16")
