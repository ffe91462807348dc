"""Image folders at their own resolution: a small folder is prepared once into arrays (resized
once, mean/std computed once and found again by hash) and served by all three backends with the
same batches; Tiny-ImageNet's val annotations become class folders and it trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from bench.__main__ import main
from bench.data.datasets.registry import dataset_hash, load_arrays
from bench.data.loaders import make_loaders
from bench.spec import DataSpec
from bench.store.trackers import FINISHED, JsonLinesTracker

pytestmark = pytest.mark.slow
BACKENDS = ("memory", "torch", "ffcv")


def write_folder(root, classes=10, train=6, val=2, size=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = rng.integers(0, 256, 3) * 0.5 + 60 * (c % 4)
                pixels = np.clip(base + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img_{i}.png")
    return root


def spec(root, **values) -> DataSpec:
    return DataSpec(dataset="imagefolder", root=str(root), resolution=32, **values)


def test_a_32px_folder_gives_the_same_batches_on_every_backend(tmp_path):
    root = write_folder(tmp_path / "folder")
    work = tmp_path / "work"
    batches = {}
    for backend in BACKENDS:
        loaders = make_loaders(spec(root, backend=backend), batch_size=16, seed=3,
                               device="cpu", workdir=work)
        batches[backend] = [
            [tuple(t.clone() for t in batch) for batch in loader.epoch(epoch)]
            for loader, epoch in ((loaders.train, 1), (loaders.train, 2), (loaders.test, 0))
        ]
        assert loaders.num_classes == 10 and loaders.train_size == 60
    for backend in ("torch", "ffcv"):
        for ours, theirs in zip(batches["memory"], batches[backend], strict=True):
            for a, b in zip(ours, theirs, strict=True):
                assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), backend


def test_mean_and_std_are_computed_once_and_found_again_by_hash(tmp_path, capsys):
    root = write_folder(tmp_path / "folder")
    work = tmp_path / "work"
    splits = load_arrays(spec(root), work)
    pixels = np.stack([
        np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255
        for p in sorted((root / "train").rglob("*.png"))
    ])
    assert np.allclose(splits.normalization.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-9)
    assert np.allclose(splits.normalization.std, pixels.std(axis=(0, 1, 2)), atol=1e-9)
    meta = next(work.glob("prepared/*-r32/meta.json"))
    assert json.loads(meta.read_text())["mean"] == list(splits.normalization.mean)
    capsys.readouterr()
    again = load_arrays(spec(root), work)  # found by hash: nothing is read or resized again
    assert "preparing" not in capsys.readouterr().out
    assert again.normalization == splits.normalization
    given = load_arrays(spec(root, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)), work)
    assert given.normalization.mean == (0.5, 0.5, 0.5)
    # a changed file changes the hash (and so every cell key)
    before = dataset_hash(spec(root), work)
    image = root / "train" / "class_00" / "img_0.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(image)
    assert dataset_hash(spec(root), work) != before


def test_images_of_other_sizes_are_resized_once_by_the_stated_policy(tmp_path):
    root = write_folder(tmp_path / "folder", classes=2, train=1, val=1, size=(48, 40))
    splits = load_arrays(spec(root), tmp_path / "work")
    source = Image.open(root / "train" / "class_00" / "img_0.png").convert("RGB")
    resized = source.resize((38, 32), Image.Resampling.BILINEAR, reducing_gap=None)
    expected = np.asarray(resized.crop((3, 0, 35, 32))).transpose(2, 0, 1)
    assert splits.train_images.shape == (2, 3, 32, 32)
    assert np.array_equal(splits.train_images[0].numpy(), expected)


def _matrix(tmp_path, data: dict, teacher: str, student: str) -> str:
    raw = {"name": "folders", "data": data, "recipe": {"epochs": 1, "batch_size": 16,
           "milestones": [1]}, "teacher": {"recipe": {"epochs": 1}},
           "pairs": [{"teacher": teacher, "student": student}], "methods": ["kd"]}
    path = tmp_path / "folders.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_resnet20_to_resnet8_trains_on_a_32px_folder_on_every_backend(tmp_path):
    root = write_folder(tmp_path / "folder")
    results = {}
    for backend in BACKENDS:
        data = {"dataset": "imagefolder", "root": str(root), "resolution": 32, "backend": backend}
        work = tmp_path / f"work-{backend}"
        matrix = _matrix(tmp_path, data, "resnet20", "resnet8")
        assert main(["run", "--matrix", matrix, "--workdir", str(work), "--tracking", "none"]) == 0
        (student,) = [r for r in JsonLinesTracker(work).search() if r.tags["role"] == "student"]
        assert student.status == FINISHED
        results[backend] = (student.tags["cell_key"], student.metrics["last_top1"])
    assert len(set(results.values())) == 1, results  # one cell, the same number
    # the teacher-logit cache covers a prepared folder (its 162 crop-flip variants per image)
    cached = tmp_path / "work-memory"
    assert main(["run", "--matrix", matrix, "--workdir", str(cached), "--tracking", "none",
                 "--teacher-cache", "float32"]) == 0
    assert len(list((cached / "teacher_cache").glob("*.npy"))) == 1


def write_tiny_imagenet(root, wnids=("n01443537", "n01629819", "n01641577"), per_class=4):
    rng = np.random.default_rng(0)
    lines = []
    for c, wnid in enumerate(wnids):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            pixels = np.clip(rng.normal(80 * c, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(images / f"{wnid}_{i}.JPEG")
        for i in range(2):
            name = f"val_{c * 2 + i}.JPEG"
            (root / "val" / "images").mkdir(parents=True, exist_ok=True)
            pixels = np.clip(rng.normal(80 * c, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "val" / "images" / name)
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    return root


def test_tiny_imagenet_is_prepared_into_class_folders_and_trains(tmp_path, capsys):
    root = write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    work = tmp_path / "work"
    args = ["data", "prepare", "tinyimagenet", "--root", str(root), "--backend", "memory"]
    assert main([*args, "--workdir", str(work)]) == 0
    assert not (root / "val" / "images").exists()
    assert sorted(p.name for p in (root / "val").iterdir() if p.is_dir()) == [
        "n01443537", "n01629819", "n01641577"
    ]
    assert len(list((root / "val" / "n01629819").iterdir())) == 2
    data = {"dataset": "tinyimagenet", "root": str(root)}
    matrix = _matrix(tmp_path, data, "torchvision:resnet18", "imagenet:mobilenetv1")
    assert main(["run", "--matrix", matrix, "--workdir", str(work), "--tracking", "none"]) == 0
    records = JsonLinesTracker(work).search()
    assert [r.status for r in records] == [FINISHED, FINISHED]
    assert {r.params["data.resolution"] for r in records} == {"64"}


def test_the_cifar_zoo_takes_32_to_64_px_and_the_guard_says_so():
    import model_zoo
    from bench.errors import SpecError
    from bench.spec import build_matrix
    from model_zoo.registry import _MODELS

    for name, info in _MODELS.items():
        if info.resolution == 32:
            model = model_zoo.create(name, num_classes=7).eval()
            with torch.no_grad():
                for side in (32, 48, 64):
                    assert model(torch.zeros(1, 3, side, side)).shape == (1, 7), (name, side)
    raw = {"name": "m", "pairs": [{"teacher": "resnet32x4", "student": "ShuffleV1"}],
           "methods": ["kd"], "data": {"dataset": "tinyimagenet"}}
    assert build_matrix(raw, "t", data_hash="h").data.resolution == 64
    raw["data"] = {"dataset": "imagefolder", "resolution": 224}
    with pytest.raises(SpecError, match="model 'resnet32x4' takes 32 to 64 px but imagefolder "
                       "is served at 224 px"):
        build_matrix(raw, "t", data_hash="h")
    raw["data"] = {"dataset": "imagefolder", "resolution": 96, "augment": False}
    with pytest.raises(SpecError, match="up to 64 px .prepared once. or at 224 px in this "
                       "version, not 96"):
        build_matrix(raw, "t", data_hash="h")


def test_a_folder_whose_splits_hold_other_classes_is_refused_in_one_line(tmp_path):
    from bench.errors import DataError

    root = write_folder(tmp_path / "folder", classes=3, train=2, val=1)
    (root / "val" / "class_01").rename(root / "val" / "class_09")
    with pytest.raises(DataError, match="train/ and val/ hold different class folders"):
        load_arrays(spec(root), tmp_path / "work")


def test_tiny_imagenet_at_224_px_is_served_per_step_and_its_backends_are_other_cells():
    tiny = DataSpec(dataset="tinyimagenet", resolution=224)
    assert tiny.backend == "torch" and tiny.pixel_pipeline != "exact"
    assert DataSpec(dataset="tinyimagenet").backend == "memory"  # 64 px: prepared arrays


def test_rrc_flip_on_a_small_folder_gives_the_same_batches_on_every_backend(tmp_path):
    root = write_folder(tmp_path / "folder", classes=4, train=6, val=1)
    work = tmp_path / "work"
    batches = {}
    for backend in BACKENDS:
        loaders = make_loaders(spec(root, backend=backend, augment="rrc_flip"), batch_size=8,
                               seed=3, device="cpu", workdir=work)
        batches[backend] = [t.clone() for t, *_ in loaders.train.epoch(1)]
    crop_flip = make_loaders(spec(root), batch_size=8, seed=3, device="cpu", workdir=work)
    plain = [t for t, *_ in crop_flip.train.epoch(1)]
    for backend in ("torch", "ffcv"):
        assert all(torch.equal(a, b) for a, b in zip(batches["memory"], batches[backend],
                                                     strict=True)), backend
    assert batches["memory"][0].shape == (8, 3, 32, 32)
    assert not any(torch.equal(a, b) for a, b in zip(batches["memory"], plain, strict=True))


def test_rrc_boxes_follow_torchvisions_ranges_and_a_whole_box_is_the_image():
    from bench.data.augment import RRC_RATIO, RRC_SCALE, resized_crop_flip, rrc_boxes

    boxes = rrc_boxes(5, 2, torch.arange(20000), 64, 48)
    x0, y0, x1, y1 = boxes.unbind(1)
    w, h = x1 - x0, y1 - y0
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 48).all() and (y1 <= 64).all()
    area = w * h / (64 * 48)
    assert area.min() >= RRC_SCALE[0] * 0.8 and area.max() <= RRC_SCALE[1]
    unclamped = (w < 48) & (h < 64)
    ratio = (w / h)[unclamped]
    assert ratio.min() > RRC_RATIO[0] * 0.8 and ratio.max() < RRC_RATIO[1] * 1.2
    assert 0.45 < area.mean() < 0.6  # U(0.08, 1) has mean 0.54; clamping lowers it a little

    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    whole = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2)
    out = resized_crop_flip(images, whole, torch.tensor([False, True]), 16)
    assert torch.equal(out[0], images[0].float() / 255)
    assert torch.equal(out[1], images[1].flip(-1).float() / 255)
    # An enlarged crop is torchvision's bilinear resize of it, away from the box edges
    from torchvision.transforms.v2.functional import resize

    box = torch.tensor([[4.0, 2.0, 12.0, 10.0]])
    ours = resized_crop_flip(images[:1], box, torch.tensor([False]), 16)[0]
    theirs = resize(images[0, :, 2:10, 4:12].float() / 255, [16, 16], antialias=False)
    assert torch.allclose(ours[:, 1:-1, 1:-1], theirs[:, 1:-1, 1:-1], atol=1e-6)


def test_rrc_flip_between_64_and_224_px_is_refused_in_one_line():
    from bench.errors import SpecError
    from bench.spec import check_data

    with pytest.raises(SpecError, match="served at up to 64 px .prepared once. or at 224 px in "
                       "this version, not 128"):
        check_data(DataSpec(dataset="imagefolder", resolution=128, augment="rrc_flip"))
    check_data(DataSpec(dataset="imagefolder", resolution=48, augment="rrc_flip"))
    check_data(DataSpec(dataset="cifar10", augment="rrc_flip"))
