"""Training images/s: a naive mdistiller-style loop against kdbench's loop, in one process.

The naive loop is pinned to the field's usual settings: torchvision DataLoader with 2 workers and
stateful random transforms, fp32, contiguous memory, `.item()` every step, the teacher forward on
every step, drop_last False. kdbench's loop runs each data backend and each speed option.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import methods
import model_zoo
from bench.data.augment import CIFAR100_MEAN, CIFAR100_STD
from bench.data.datasets.registry import load_cifar
from bench.engine.train import TeacherForward, build_optimizer, train_step
from bench.spec import DataSpec, Recipe


@dataclass
class PerfRow:
    variant: str
    images_per_s: float
    steps: int
    setup_s: float = 0.0
    ratio: float = float("nan")
    note: str = ""


class _Timer:
    """Wall time on CPU; CUDA events on CUDA (no host sync inside the timed steps)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t0


def _naive_transform():
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(CIFAR100_MEAN, CIFAR100_STD),
        ]
    )


class _NaiveDataset(TensorDataset):
    def __init__(self, images, labels):
        super().__init__(images, labels)
        self.transform = _naive_transform()

    def __getitem__(self, i):
        image, label = super().__getitem__(i)
        return self.transform(image), label


def naive_batches(images_uint8, labels, batch_size: int, workers: int = 2) -> Iterator:
    loader = DataLoader(
        _NaiveDataset(images_uint8, labels),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=False,
        persistent_workers=workers > 0,
    )
    while True:
        yield from loader


def naive_step(student, teacher, method, optimizer, images, labels, device) -> float:
    """One step of the usual loop: fp32, teacher forward every step, host sync every step."""
    images, labels = images.to(device), labels.to(device)
    logits = student(images)
    with torch.no_grad():
        teacher_logits = teacher(images) if teacher is not None else None
    loss = method(logits, teacher_logits, labels, 1)["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item() + (logits.argmax(1) == labels).float().mean().item()


def _images_per_s(step: Callable[[], int], steps: int, warmup: int, device) -> float:
    """Images per second over `steps` timed steps (each returns its batch size) after warm-up."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    images = 0
    with _Timer(device) as timer:
        for _ in range(steps):
            images += step()
    return images / timer.seconds


@dataclass
class PerfSetup:
    teacher: str
    student: str
    method: str
    device: torch.device
    batch_size: int
    steps: int
    warmup: int
    classes: int
    per_class: int
    workdir: Path


def _models(setup: PerfSetup, num_classes: int, channels_last: bool):
    torch.manual_seed(0)
    student = model_zoo.create(setup.student, num_classes=num_classes).to(setup.device)
    teacher = model_zoo.create(setup.teacher, num_classes=num_classes).to(setup.device).eval()
    if channels_last:
        student = student.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last)
    return student, teacher


def _data_spec(setup: PerfSetup, backend: str) -> DataSpec:
    return DataSpec(
        dataset="synthetic",
        backend=backend,
        synthetic={
            "classes": setup.classes,
            "train_per_class": setup.per_class,
            "test_per_class": 1,
        },
    )


def measure_naive(setup: PerfSetup) -> PerfRow:
    splits = load_cifar(_data_spec(setup, "torch"), setup.workdir)
    student, teacher = _models(setup, splits.num_classes, channels_last=False)
    method = methods.create(setup.method, num_classes=splits.num_classes)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    batches = naive_batches(splits.train_images, splits.train_labels, setup.batch_size)
    student.train()

    def step() -> int:
        images, labels = next(batches)
        naive_step(student, teacher, method, optimizer, images, labels, setup.device)
        return len(labels)

    speed = _images_per_s(step, setup.steps, setup.warmup, setup.device)
    return PerfRow("naive (DataLoader x2, fp32, sync/step)", speed, setup.steps)


def _teacher_of(setup: PerfSetup, backend: str, teacher_model, loaders, cache: str,
                precision: str) -> tuple[Callable, float]:
    """The teacher's logits per batch: its forward, or lookups in the logit cache built here
    (and the seconds the build took)."""
    if cache == "none":
        return TeacherForward(teacher_model), 0.0
    from bench.engine.teacher_cache import CachedTeacher, load_or_build

    splits = load_cifar(_data_spec(setup, backend), setup.workdir)
    started = time.perf_counter()
    table = load_or_build(
        teacher_model,
        teacher_sha=f"perf-random-{setup.teacher}",
        data_hash=loaders.content_hash,
        images=splits.train_images,
        file_index=splits.train_index,
        dtype=cache,
        device=setup.device,
        workdir=setup.workdir,
        precision=precision,
        log=lambda _: None,
    )
    return CachedTeacher(table, loaders.variants), time.perf_counter() - started


def _variant(backend: str, channels_last: bool, cache: str, compile_model: bool, precision: str,
             device: torch.device) -> list[str]:
    options = (
        [backend]
        + (["channels_last"] if channels_last else [])
        + ([f"cache {cache}"] if cache != "none" else [])
        + (["compile"] if compile_model else [])
    )
    if precision == "bf16":
        options.insert(1, "bf16")
    if device.type == "cuda":
        options.insert(1, "fused SGD")
    return options


def measure_kdbench(
    setup: PerfSetup,
    backend: str,
    *,
    channels_last: bool = False,
    cache: str = "none",
    compile_model: bool = False,
    precision: str | None = None,
) -> PerfRow:
    from bench.data.loaders import make_loaders

    device = setup.device
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")
    loaders = make_loaders(
        _data_spec(setup, backend),
        batch_size=setup.batch_size,
        seed=0,
        device=device,
        workdir=setup.workdir,
    )
    student, teacher_model = _models(setup, loaders.num_classes, channels_last)
    method = methods.create(setup.method, num_classes=loaders.num_classes)
    optimizer = build_optimizer(student, Recipe(lr=0.05), device)
    teacher, setup_s = _teacher_of(setup, backend, teacher_model, loaders, cache, precision)
    forward = student
    if compile_model:
        started = time.perf_counter()
        forward = torch.compile(student)
    student.train()
    state = {"epoch": 1, "batches": iter(loaders.train.epoch(1))}

    def next_batch():
        try:
            return next(state["batches"])
        except StopIteration:
            state["epoch"] += 1
            state["batches"] = iter(loaders.train.epoch(state["epoch"]))
            return next(state["batches"])

    def step() -> int:
        images, labels, indices = next_batch()
        train_step(forward, method, teacher, optimizer, images, labels, indices, state["epoch"],
                   device=device, precision=precision, channels_last=channels_last)
        return labels.shape[0]  # a shape, not a value: no host sync

    if compile_model:
        step()  # the compile happens here, outside the timed region
        setup_s = time.perf_counter() - started
    speed = _images_per_s(step, setup.steps, setup.warmup, device)
    options = _variant(backend, channels_last, cache, compile_model, precision, device)
    return PerfRow("kdbench " + " + ".join(options), speed, setup.steps, setup_s)


def measure_training(
    setup: PerfSetup,
    backends: list[str],
    compile_model: bool = False,
    log: Callable[[str], None] = print,
) -> list[PerfRow]:
    rows = [measure_naive(setup)]
    log(f"  {rows[0].variant}: {rows[0].images_per_s:.0f} img/s")
    variants: list[dict] = [{"backend": b} for b in backends]
    best_backend = "memory" if "memory" in backends else backends[0]
    variants += [
        {"backend": best_backend, "channels_last": True},
        {"backend": best_backend, "channels_last": True, "cache": "float16"},
    ]
    if setup.device.type == "cpu":  # bf16 autocast pays off on CPUs with AMX / AVX512-BF16
        variants += [
            {"backend": best_backend, "channels_last": True, "precision": "bf16"},
            {
                "backend": best_backend,
                "channels_last": True,
                "precision": "bf16",
                "cache": "float16",
            },
        ]
    if compile_model:
        variants.append({"backend": best_backend, "channels_last": True, "compile_model": True})
    for options in variants:
        options = dict(options)
        try:
            row = measure_kdbench(setup, options.pop("backend"), **options)
        except Exception as exc:  # a backend missing here is reported, not fatal
            row = PerfRow(f"kdbench {options}", float("nan"), 0, note=str(exc).splitlines()[0])
        rows.append(row)
        log(f"  {row.variant}: {row.images_per_s:.0f} img/s")
    for row in rows:
        row.ratio = row.images_per_s / rows[0].images_per_s
    return rows


def naive_train_epoch(
    student: nn.Module,
    teacher: nn.Module | None,
    method: nn.Module,
    optimizer,
    batches,
    device: torch.device,
) -> None:
    """The plain loop over given batches (used to prove kdbench's loop equals it bitwise)."""
    student.train()
    for images, labels, _ in batches:
        naive_step(student, teacher, method, optimizer, images, labels, device)
