"""Generated data is CIFAR-100's on-disk format, read by the real reader; bad files fail clearly."""

import pickle

import numpy as np
import pytest

from bench.data.datasets import cifar, synthetic
from bench.errors import DataError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    config = synthetic.SyntheticConfig(classes=5, train_per_class=8, test_per_class=4, seed=1)
    return synthetic.generate(tmp_path_factory.mktemp("syn") / "data", config)


def test_files_have_the_cifar100_layout_and_keys(root):
    with open(root / "cifar-100-python" / "train", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert set(entry) == {"filenames", "batch_label", "fine_labels", "coarse_labels", "data"}
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (40, 3072)
    with open(root / "cifar-100-python" / "meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert len(meta["fine_label_names"]) == 5


def test_round_trip_through_the_reader(root, tmp_path):
    train = cifar.read_split(root, "train", verify=False)
    assert train.images.shape == (40, 3, 32, 32) and train.num_classes == 5
    assert np.bincount(train.labels).tolist() == [8] * 5
    cifar.write_split(tmp_path, "train", train.images, train.labels)
    cifar.write_meta(tmp_path, list(train.class_names))
    again = cifar.read_split(tmp_path, "train", verify=False)
    assert np.array_equal(again.images, train.images)
    assert np.array_equal(again.labels, train.labels)


def test_classes_are_recoverable_from_content(root):
    """A nearest-class-mean classifier on train means separates the test images."""
    train = cifar.read_split(root, "train", verify=False)
    test = cifar.read_split(root, "test", verify=False)
    means = np.stack([train.images[train.labels == c].mean(0) for c in range(5)]).reshape(5, -1)
    flat = test.images.reshape(len(test.images), -1).astype(np.float64)
    pred = ((flat[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == test.labels).mean() >= 0.9


def test_generation_is_deterministic(tmp_path):
    config = synthetic.SyntheticConfig(classes=3, train_per_class=2, test_per_class=1, seed=5)
    a = cifar.read_split(synthetic.generate(tmp_path / "a", config), "train", verify=False)
    b = cifar.read_split(synthetic.generate(tmp_path / "b", config), "train", verify=False)
    assert np.array_equal(a.images, b.images)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError) as info:
        cifar.read_split(tmp_path, "train", verify=False)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "cifar-100-python" / "train") in message


def test_truncated_file_names_the_path(root, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    train = copy / "cifar-100-python" / "train"
    train.write_bytes(train.read_bytes()[:1000])
    with pytest.raises(DataError) as info:
        cifar.read_split(copy, "train", verify=False)
    assert "corrupted" in str(info.value) and str(train) in str(info.value)


def test_real_cifar_keeps_the_md5_check(root):
    with pytest.raises(DataError) as info:
        cifar.read_split(root, "train", verify=True)
    assert "md5" in str(info.value)
