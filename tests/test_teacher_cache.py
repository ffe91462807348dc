"""The teacher-logit cache is exact: lookups equal a fresh teacher forward on the same variant."""

import numpy as np
import pytest
import torch
from torch import nn

import methods
import model_zoo
from bench.data.augment import CIFAR100_MEAN, CIFAR100_STD, augment_batch, augment_params
from bench.data.datasets.registry import load_cifar
from bench.engine.teacher_cache import (
    VARIANTS,
    CachedTeacher,
    TeacherLogitCache,
    compute_logits,
    load_or_build,
    variant_id,
    variant_params,
)
from bench.spec import DataSpec

SYN = {"classes": 5, "train_per_class": 6, "test_per_class": 2, "seed": 4}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cache")
    data = DataSpec(dataset="synthetic", synthetic=SYN, subset_per_class=4)
    return load_cifar(data, workdir), workdir


def test_variant_ids_cover_162_distinct_triples():
    triples = {variant_params(v) for v in range(VARIANTS)}
    assert len(triples) == VARIANTS == 162
    for v in range(VARIANTS):
        dx, dy, flip = variant_params(v)
        assert variant_id(torch.tensor(dx), torch.tensor(dy), torch.tensor(flip)) == v


def test_cached_logits_equal_a_fresh_forward(splits, tmp_path):
    data, workdir = splits
    torch.manual_seed(0)
    teacher = model_zoo.create("resnet8", num_classes=5).eval()
    cache = load_or_build(teacher, teacher_sha="t", data_hash=data.content_hash,
                          images=data.train_images, file_index=data.train_index,
                          dtype="float32", device=torch.device("cpu"), workdir=tmp_path,
                          log=lambda _: None)
    cached = CachedTeacher(cache, lambda epoch, i: augment_params(11, epoch, i))
    generator = torch.Generator().manual_seed(1)
    for epoch in (1, 2, 7):
        positions = torch.randint(len(data.train_index), (8,), generator=generator)
        indices = data.train_index[positions]
        images = augment_batch(data.train_images[positions], 11, epoch, indices)
        with torch.no_grad():
            fresh = teacher(images)
        torch.testing.assert_close(cached(images, indices, epoch), fresh, rtol=1e-5, atol=1e-5)


class ProbeTeacher(nn.Module):
    """Logits = un-normalized pixels at fixed places: any wrong crop, flip or row shows."""

    def forward(self, x):
        mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
        pixels = (x * std + mean) * 255
        return pixels[:, :, ::7, ::5].flatten(1)


def _reference_view(image: np.ndarray, dx: int, dy: int, flip: bool) -> np.ndarray:
    padded = np.zeros((3, 40, 40), dtype=np.float64)
    padded[:, 4:36, 4:36] = image
    view = padded[:, dy : dy + 32, dx : dx + 32]
    return view[:, :, ::-1] if flip else view


def test_probe_teacher_proves_the_lookup_axes():
    generator = np.random.default_rng(0)
    images = torch.from_numpy(generator.integers(1, 256, size=(7, 3, 32, 32), dtype=np.uint8))
    file_index = torch.tensor([3, 0, 9, 4, 12, 5, 1])
    logits = compute_logits(ProbeTeacher(), images, dtype="float32", device=torch.device("cpu"))
    cache = TeacherLogitCache(logits, file_index)
    for position in range(7):
        for dx, dy, flip in [(0, 0, False), (8, 0, True), (0, 8, False), (3, 6, True),
                             (4, 4, False), (8, 8, True)]:
            got = cache.lookup(file_index[position : position + 1], torch.tensor([dx]),
                               torch.tensor([dy]), torch.tensor([flip]))
            view = _reference_view(images[position].numpy().astype(np.float64), dx, dy, flip)
            expected = view[:, ::7, ::5].reshape(-1)
            np.testing.assert_allclose(got[0].numpy(), expected, atol=1e-3)


def test_float16_storage_keeps_kl_small(splits):
    data, _ = splits
    torch.manual_seed(0)
    teacher = model_zoo.create("resnet8", num_classes=5).eval()
    exact = compute_logits(teacher, data.train_images, dtype="float32", device=torch.device("cpu"))
    half = compute_logits(teacher, data.train_images, dtype="float16", device=torch.device("cpu"))
    temperature = methods.resolve_params("kd")["temperature"]
    p = torch.log_softmax(exact.float() / temperature, -1)
    q = torch.log_softmax(half.float() / temperature, -1)
    kl = (p.exp() * (p - q)).sum(-1)
    assert kl.max().item() < 1e-4
