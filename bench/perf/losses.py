"""Loss-method speed: forward + backward of every registered method on random logits."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from tabulate import tabulate

import methods

WARMUP_ITERATIONS = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_step(
    method: methods.Method, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor
) -> None:
    method(student, teacher, target, 1)["loss"].backward()


def _prepared(name: str, classes: int, device: torch.device) -> methods.Method:
    """A method ready to time: what it needs from a teacher (its classifier) is a random one."""
    method = methods.create(name, num_classes=classes).to(device)
    if method.needs.teacher_classifier:
        generator = torch.Generator().manual_seed(classes)
        classifier = torch.nn.Linear(64, classes).to(device)
        with torch.no_grad():
            classifier.weight.copy_(torch.randn(classes, 64, generator=generator))
        context = methods.MethodContext(
            num_classes=classes, train_size=0, dataset="generated", device=device,
            teacher_classifier=classifier,
        )
        method.prepare(context)
    return method


def measure_losses(
    shapes: Sequence[tuple[int, int]] = ((64, 100), (512, 1000)),
    repeats: int = 50,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Median milliseconds of forward + backward per method and (batch, classes) shape.

    Methods are interleaved within each repeat, so the ratio to kd compares like with like
    even when the machine's load drifts during the run. Warm-up iterations are not timed.
    """
    dev = torch.device(device)
    names = methods.available()
    rows: list[dict[str, Any]] = []
    for batch, classes in shapes:
        gen = torch.Generator().manual_seed(batch * 100003 + classes)
        # a two-view method gets the logits of both views of the batch ([2B])
        student = (torch.randn(2 * batch, classes, generator=gen) * 3).to(dev).requires_grad_()
        teacher = (torch.randn(2 * batch, classes, generator=gen) * 3).to(dev)
        target = torch.randint(0, classes, (batch,), generator=gen).to(dev)
        losses = {name: _prepared(name, classes, dev) for name in names}
        inputs = {
            name: (student if method.needs.two_views else student[:batch],
                   teacher if method.needs.two_views else teacher[:batch], target)
            for name, method in losses.items()
        }
        for name, method in losses.items():
            for _ in range(WARMUP_ITERATIONS):
                _one_step(method, *inputs[name])
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(repeats):
            for name, method in losses.items():
                _sync(dev)
                start = time.perf_counter()
                _one_step(method, *inputs[name])
                _sync(dev)
                times[name].append((time.perf_counter() - start) * 1e3)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name in names:
            rows.append(
                {
                    "method": name,
                    "batch": batch,
                    "classes": classes,
                    "ms": medians[name],
                    "ratio_to_kd": medians[name] / medians["kd"],
                }
            )
    return rows


def format_losses_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of `measure_losses` rows."""
    headers = ["method", "batch", "classes", "ms", "ratio_to_kd"]
    body = [[row[key] for key in headers] for row in rows]
    return tabulate(body, headers=headers, floatfmt=(None, None, None, ".3f", ".2f"))
