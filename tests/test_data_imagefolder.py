"""Image folders (ImageNet layout) on a tiny generated folder: hash, torch and ffcv loaders."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.datasets.imagefolder import folder_hash
from bench.data.datasets.registry import dataset_hash
from bench.data.folder_transforms import resized_crop_params
from bench.data.loaders import make_loaders
from bench.errors import DataError
from bench.spec import DataSpec

CLASSES = ("ant", "bee", "cat")
SIZES = ((40, 56), (64, 48), (50, 50), (72, 36))  # (width, height): every aspect RRC can meet
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def write_folder(root, train_per_class=4, val_per_class=2):
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                w, h = SIZES[k % len(SIZES)]
                y, x = np.mgrid[0:h, 0:w]
                pixels = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 80 * c)], axis=-1)
                pixels = np.clip(pixels + rng.integers(0, 20, pixels.shape), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("imagefolder")
    return write_folder(base / "images"), base / "work"


def spec(root, **fields):
    return DataSpec(dataset="imagefolder", root=str(root), **fields)


def batches(loader, epoch):
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader.epoch(epoch)]


def test_folder_hash_follows_the_file_list_and_sizes(tmp_path):
    root = write_folder(tmp_path / "a")
    first = folder_hash(root)
    assert first == folder_hash(write_folder(tmp_path / "b"))  # same files, same sizes
    assert dataset_hash(spec(root), tmp_path) == first
    Image.new("RGB", (9, 9)).save(root / "val" / "ant" / "extra.png")
    added = folder_hash(root)
    assert added != first
    Image.new("RGB", (10, 10)).save(root / "val" / "ant" / "extra.png")
    assert folder_hash(root) not in (first, added)
    with pytest.raises(DataError, match="image folder not found"):
        folder_hash(tmp_path / "missing")


def test_resized_crop_params_are_a_function_of_seed_epoch_index():
    params = [resized_crop_params(0, e, i, 48, 64) for e in range(3) for i in range(20)]
    assert params == [resized_crop_params(0, e, i, 48, 64) for e in range(3) for i in range(20)]
    assert len(set(params)) > 50
    for top, left, h, w in params:
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64 and h > 0 and w > 0


def test_torch_backend_batches(folder):
    root, workdir = folder
    loaders = make_loaders(spec(root), batch_size=5, seed=1, device="cpu", workdir=workdir)
    assert loaders.num_classes == 3 and len(loaders.train) == 3 and loaders.train.num_samples == 12
    epoch0 = batches(loaders.train, 0)
    assert all(x.shape[1:] == (3, 224, 224) and x.dtype == torch.float32 for x, _, _ in epoch0)
    indices = torch.cat([i for _, _, i in epoch0])
    labels = torch.cat([y for _, y, _ in epoch0])
    assert sorted(indices.tolist()) == list(range(12))
    assert labels.tolist() == (indices // 4).tolist()  # 4 images per class, in class order
    again = batches(
        make_loaders(spec(root), batch_size=5, seed=1, device="cpu", workdir=workdir).train, 0
    )
    for (xa, ya, ia), (xb, yb, ib) in zip(epoch0, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    epoch1 = torch.cat([x for x, _, _ in batches(loaders.train, 1)])
    assert not torch.equal(torch.cat([x for x, _, _ in epoch0]), epoch1)


def test_torch_backend_test_transform_is_resize_256_center_crop_224(folder):
    from torchvision import transforms

    root, workdir = folder
    loaders = make_loaders(spec(root), batch_size=4, seed=0, device="cpu", workdir=workdir)
    got = torch.cat([x for x, _, _ in batches(loaders.test, 0)])
    reference = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()]
    )
    files = sorted((root / "val").glob("*/*.png"))
    expected = torch.stack([reference(Image.open(p).convert("RGB")) for p in files])
    torch.testing.assert_close(got, (expected.float() / 255 - MEAN) / STD, rtol=0, atol=1e-5)


def test_subset_and_gpu_rejection(folder):
    root, workdir = folder
    loaders = make_loaders(
        spec(root, subset_per_class=2), batch_size=4, seed=0, device="cpu", workdir=workdir
    )
    indices = torch.cat([i for _, _, i in batches(loaders.train, 0)])
    assert sorted(indices.tolist()) == [0, 1, 4, 5, 8, 9]
    with pytest.raises(Exception, match="also called .gpu."):
        make_loaders(spec(root, backend="gpu"), batch_size=4, seed=0, device="cpu", workdir=workdir)


def test_ffcv_backend_reads_the_folder(folder):
    root, workdir = folder
    ffcv = make_loaders(
        spec(root, backend="ffcv"), batch_size=5, seed=2, device="cpu", workdir=workdir
    )
    torch_loaders = make_loaders(spec(root), batch_size=5, seed=2, device="cpu", workdir=workdir)
    assert ffcv.content_hash == torch_loaders.content_hash
    train = batches(ffcv.train, 0)
    assert all(x.shape[1:] == (3, 224, 224) for x, _, _ in train)
    reference = batches(torch_loaders.train, 0)
    for (_, y, i), (_, y_ref, i_ref) in zip(train, reference, strict=True):
        assert torch.equal(i, i_ref) and torch.equal(y, y_ref)  # same order, same labels
    test = torch.cat([x for x, _, _ in batches(ffcv.test, 0)])
    test_ref = torch.cat([x for x, _, _ in batches(torch_loaders.test, 0)])
    assert test.shape == test_ref.shape == (6, 3, 224, 224)
    # FFCV's centre crop (ratio 224/256, JPEG q90, OpenCV resize) approximates torchvision's
    assert (test - test_ref).abs().mean() < 0.15
