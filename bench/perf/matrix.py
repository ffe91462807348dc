"""`python -m bench perf --matrix M`: every method's full training step (data, student and
teacher forward, the method's loss and its optimizer step) on every pair of the matrix, in one
process, on one device, at the matrix's batch size: time per image relative to KD within one run.

The data are generated in the matrix's format (its class count, 32 px) so nothing is downloaded;
teachers are random-init (a forward costs the same)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

import model_zoo
from bench.engine.execute import _build_method, loaders_for
from bench.engine.train import TeacherForward, build_optimizer, train_step
from bench.perf.training import _images_per_s
from bench.report.costs import Costs, save_costs
from bench.spec import DataSpec, Matrix


@dataclasses.dataclass
class _Teacher:
    model: torch.nn.Module


def _synthetic(matrix: Matrix, batch: int, steps: int) -> DataSpec:
    classes = matrix.data.num_classes or 100
    per_class = max(2, -(-batch * (steps + 2) // classes))
    return DataSpec(dataset="synthetic", synthetic={"classes": classes,
                                                    "train_per_class": per_class,
                                                    "test_per_class": 1})


def _time_one(run, device: torch.device, workdir: Path, steps: int, warmup: int) -> float:
    """Images/s of the run's training step: data, both forwards, the loss, the optimizer step."""
    loaders = loaders_for(run, device, workdir)
    torch.manual_seed(0)
    teacher = None
    if run.teacher is not None:
        model = model_zoo.create(run.teacher.arch, num_classes=loaders.num_classes)
        teacher = _Teacher(model.to(device).eval())
    student = model_zoo.create(run.student, num_classes=loaders.num_classes).to(device)
    student = student.to(memory_format=torch.channels_last).train()
    method = _build_method(run, loaders, teacher, device)
    optimizer = build_optimizer(student, run.recipe, device, method)
    forward = TeacherForward(teacher.model) if teacher else None
    state = {"epoch": 1, "batches": iter(loaders.train.epoch(1))}

    def step() -> int:
        try:
            images, labels, indices = next(state["batches"])
        except StopIteration:
            state["epoch"] += 1
            state["batches"] = iter(loaders.train.epoch(state["epoch"]))
            images, labels, indices = next(state["batches"])
        precision = run.execution.precision
        train_step(student, method, forward, optimizer, images, labels, indices, state["epoch"],
                   device=device, precision=precision, channels_last=True)
        return labels.shape[0]

    return _images_per_s(step, steps, warmup, device)


def measure_matrix(matrix: Matrix, device: torch.device, workdir: Path, steps: int,
                   warmup: int = 2, log=print) -> Costs:
    """Every (pair, method) of the matrix timed in this process; kept in the work directory."""
    from bench.engine.environment import device_name

    firsts = {}
    for run in matrix.runs:  # one run per (pair, method): the first seed
        for pair in run.pairs:
            firsts.setdefault((pair, run.method.label), run)
    speeds: dict[str, dict[str, float]] = {}
    for (pair, label), run in firsts.items():
        data = _synthetic(matrix, run.recipe.batch_size, steps + warmup)
        started = time.perf_counter()
        speed = _time_one(dataclasses.replace(run, data=data, data_hash="perf"), device, workdir,
                          steps, warmup)
        speeds.setdefault(pair, {})[label] = speed
        log(f"{pair} {label}: {speed:.0f} img/s ({time.perf_counter() - started:.1f} s)")
    batch = "/".join(map(str, sorted({r.recipe.batch_size for r in firsts.values()})))
    measured = (f"batch {batch}, {matrix.runs[0].execution.precision}, {steps} timed steps "
                f"after {warmup}, one process")
    costs = Costs(matrix.name, f"{device_name(device)} ({device.type})", measured, speeds,
                  torch.get_num_threads() if device.type == "cpu" else None)
    save_costs(workdir, costs)
    return costs


def format_matrix_costs(costs: Costs, labels: list[str], baseline: str) -> str:
    from tabulate import tabulate

    ratios = {label: costs.relative(label, baseline) for label in labels}
    rows = [[label, "—" if r is None else f"{r:.2f}×"] for label, r in ratios.items()]
    headers = ["method", f"time per image vs {baseline} (geometric mean over pairs)"]
    return f"{costs.source}\n" + tabulate(rows, headers)
