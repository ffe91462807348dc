"""The GPU path: bf16 autocast with float32 losses, channels_last, fused SGD, cache on device.

Skipped where no CUDA device exists (conftest); run with `pytest -m cuda` on a GPU machine.
"""

import pytest
import torch

import methods
import model_zoo
from bench.data.loaders import make_loaders
from bench.engine.teacher_cache import CachedTeacher, load_or_build
from bench.engine.train import build_optimizer, train_epochs, train_step
from bench.spec import DataSpec, Recipe

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")
DATA = DataSpec(dataset="synthetic", backend="memory",
                synthetic={"classes": 10, "train_per_class": 20, "test_per_class": 4})


def test_bf16_step_keeps_losses_float32_and_uses_fused_sgd(tmp_path):
    loaders = make_loaders(DATA, batch_size=32, seed=0, device=CUDA, workdir=tmp_path)
    student = model_zoo.create("resnet8", num_classes=10).to(CUDA).to(
        memory_format=torch.channels_last)
    teacher = model_zoo.create("resnet20", num_classes=10).to(CUDA).eval()
    optimizer = build_optimizer(student, Recipe(), CUDA)
    assert optimizer.defaults["fused"] is True
    images, labels, indices = next(iter(loaders.train.epoch(1)))
    assert images.device.type == "cuda"
    method = methods.create("cakd", num_classes=10, k=2)
    terms, logits = train_step(student, method, lambda x, i, e: teacher(x), optimizer, images,
                               labels, indices, 1, device=CUDA, precision="bf16")
    assert logits.dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    assert student.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_training_on_cuda_learns(tmp_path):
    loaders = make_loaders(DATA, batch_size=32, seed=0, device=CUDA, workdir=tmp_path)
    torch.manual_seed(0)
    student = model_zoo.create("resnet8", num_classes=10).to(CUDA)
    recipe = Recipe(epochs=4, lr=0.05, milestones=(3,))
    history = []
    train_epochs(student, methods.create("ce"), None, loaders, recipe,
                 build_optimizer(student, recipe, CUDA), device=CUDA, precision="bf16",
                 on_epoch=lambda e, m: history.append(m["test/top1"]))
    assert history[-1] >= 30.0


def test_teacher_cache_lives_on_the_device(tmp_path):
    from bench.data.datasets.registry import load_cifar

    splits = load_cifar(DATA, tmp_path)
    teacher = model_zoo.create("resnet8", num_classes=10).to(CUDA).eval()
    cache = load_or_build(teacher, teacher_sha="t", data_hash=splits.content_hash,
                          images=splits.train_images, file_index=splits.train_index,
                          dtype="float16", device=CUDA, workdir=tmp_path, log=lambda _: None)
    assert cache.logits.device.type == "cuda" and cache.logits.dtype == torch.float16
    indices = splits.train_index[:8].to(CUDA)
    loaders = make_loaders(DATA, batch_size=8, seed=0, device=CUDA, workdir=tmp_path)
    teacher_logits = CachedTeacher(cache, loaders.variants)
    logits = teacher_logits(torch.empty(8, 3, 32, 32, device=CUDA), indices, 1)
    assert logits.device.type == "cuda" and logits.shape == (8, 10)
