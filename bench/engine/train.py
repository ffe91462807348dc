"""One training loop: batches in, method terms out, optimizer step, metrics kept on the device.

It knows no method by name and no tracking library; the caller gets each epoch's metrics through
`on_epoch` (where it checkpoints, then logs).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.engine import faults
from bench.engine.distributed import Group, single
from bench.errors import RunFailed
from bench.spec import Recipe

PROGRESS_EVERY = 25  # steps between progress reads (each read is one host sync)
# Under DDP the ranks agree on a stop (SIGTERM on any rank) every this many steps: one tiny
# all-reduce and host sync, where a check per step would cost a sync per step.
STOP_CHECK_EVERY = PROGRESS_EVERY


@dataclass
class Progress:
    epoch: int
    step: int
    steps: int
    loss: float


class TeacherForward:
    """The teacher run on every batch (frozen, eval mode, no graph): (images, indices, epoch)."""

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    def __call__(self, images: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        with torch.no_grad():
            return self.model(images)


def build_optimizer(
    model: nn.Module, recipe: Recipe, device: torch.device, method: nn.Module | None = None
) -> torch.optim.Optimizer:
    """SGD over the student's parameters and those a method learns (student ∪ method), or the
    method's own optimizer where it declares one."""
    # fused on CUDA (one kernel for all parameters); CPU keeps the reference implementation
    options = {"fused": True} if device.type == "cuda" else {}
    parameters = list(model.parameters())
    if method is not None:
        parameters += list(method.parameters())
    if method is not None and method.needs.optimizer:
        return method.make_optimizer(
            parameters,
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            nesterov=recipe.nesterov,
        )
    return torch.optim.SGD(
        parameters,
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
        **options,
    )


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    group: Group | None = None,
) -> dict:
    """Top-1 / top-5 accuracy (%) and mean CE over the whole test split; under DDP each rank
    scores its part and the exact counts are summed over the ranks."""
    group = group or single()
    model.eval()
    correct1 = torch.zeros((), device=device, dtype=torch.int64)
    correct5 = torch.zeros((), device=device, dtype=torch.int64)
    loss_sum = torch.zeros((), device=device)
    count = 0
    for images, labels, _ in loader.epoch(0):
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, precision):
            logits = model(images)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(labels.view(-1, 1))
        correct1 += hits[:, 0].sum()
        correct5 += hits.any(dim=1).sum()
        count += labels.numel()
    count_ = torch.tensor(float(count), device=device, dtype=torch.float64)
    totals = torch.stack([correct1.double(), correct5.double(), loss_sum.double(), count_])
    correct1, correct5, loss_sum, count = group.sum(totals).tolist()
    return {
        "top1": 100.0 * correct1 / count,
        "top5": 100.0 * correct5 / count,
        "loss": loss_sum / count,
        "count": int(count),
    }


class EpochTotals:
    """Per-epoch sums kept on the device: read once at the end (no per-step host sync)."""

    def __init__(self, device: torch.device):
        self.sums: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), device=device, dtype=torch.int64)
        self.finite = torch.ones((), device=device, dtype=torch.bool)

    @torch.no_grad()
    def add(self, terms: dict[str, torch.Tensor], logits: torch.Tensor, labels: torch.Tensor):
        batch = labels.numel()
        self.finite &= torch.isfinite(terms["loss"])
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0) + value.detach().float() * batch
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()

    def reduced(self, seen: int, group: Group) -> tuple[list[str], list[float], int, int, bool]:
        """(term names, their sums, samples, correct, all finite) over every rank: one read."""
        names = list(self.sums)
        device = self.correct.device
        values = [self.sums[n].double().reshape(()) for n in names] + [
            torch.tensor(float(seen), device=device, dtype=torch.float64),
            self.correct.double(),
            (~self.finite).double(),
        ]
        *sums, seen_all, correct, bad = group.sum(torch.stack(values)).tolist()
        return names, sums, int(seen_all), int(correct), bad == 0


def train_step(
    student: nn.Module,
    method: nn.Module,
    teacher: Callable | None,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    epoch: int,
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    loss_scale: float = 1.0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimizer step; returns the method's terms and the student logits (of the first view,
    where a batch holds several views of its images: [views * B] images, B labels).

    `loss_scale` weighs this rank's batch mean under DDP, whose gradient all-reduce averages over
    the ranks: ranks * local / global makes that average the mean over the global batch when
    the last batch splits unevenly (1 everywhere else)."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with _autocast(device, precision):
        logits = student(images)
        teacher_logits = teacher(images, indices, epoch) if teacher is not None else None
    terms = method(logits, teacher_logits, labels, epoch)
    optimizer.zero_grad(set_to_none=True)
    if loss_scale != 1.0:
        method.step({name: value * loss_scale for name, value in terms.items()}, optimizer)
    else:
        method.step(terms, optimizer)
    return terms, logits[: labels.numel()]


def _epoch_metrics(model: nn.Module, totals: EpochTotals, seen: int, elapsed: float,
                   optimizer, loaders, epoch: int, device, precision: str, channels_last: bool,
                   group: Group) -> dict[str, float]:
    """An epoch's training sums (over the ranks), then its test and validation scores."""
    names, sums, seen, correct, finite = totals.reduced(seen, group)
    if not finite:
        raise RunFailed("non-finite loss (NaN or inf)", epoch)
    metrics = {f"train/{n}": value / seen for n, value in zip(names, sums, strict=True)}
    metrics["train/top1"] = 100.0 * correct / seen
    metrics["lr"] = optimizer.param_groups[0]["lr"]
    metrics["img_per_s"] = seen / max(elapsed, 1e-9)
    group.broadcast_buffers(model)  # every rank scores (rank 0 saves) rank 0's statistics
    test = evaluate(model, loaders.test, device, precision, channels_last, group)
    metrics |= {"test/top1": test["top1"], "test/top5": test["top5"], "test/loss": test["loss"]}
    if loaders.val is not None:
        val = evaluate(model, loaders.val, device, precision, channels_last, group)
        metrics.update({"val/top1": val["top1"], "val/loss": val["loss"]})
    return metrics


def train_epochs(
    student: nn.Module,
    method: nn.Module,
    teacher: nn.Module | Callable | None,
    loaders,
    recipe: Recipe,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    precision: str = "fp32",
    start_epoch: int = 1,
    channels_last: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None],
    on_progress: Callable[[Progress], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    group: Group | None = None,
) -> int:
    """Train epochs start_epoch..recipe.epochs; returns the last completed (committed) epoch.

    Under DDP `student` is the DistributedDataParallel wrapper, `loaders` serve this rank's part
    of each global batch, and the epoch's sums, its NaN flag and a stop request are summed over
    the ranks, so every rank takes the same decisions at the same step."""
    group = group or single()
    if isinstance(teacher, nn.Module):
        teacher = TeacherForward(teacher)
    model = student.module if isinstance(student, nn.parallel.DistributedDataParallel) else student
    steps = len(loaders.train)
    samples = loaders.train_size
    last = start_epoch - 1
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, recipe.epochs + 1):
            for param_group in optimizer.param_groups:
                param_group["lr"] = recipe.lr_at(epoch)
            student.train()
            totals = EpochTotals(device)
            seen = 0
            started = time.perf_counter()
            for step, (images, labels, indices) in enumerate(loaders.train.epoch(epoch), start=1):
                faults.check("step", epoch, step)
                scale = 1.0
                if group.distributed:
                    global_batch = min(recipe.batch_size, samples - (step - 1) * recipe.batch_size)
                    scale = group.world * labels.numel() / global_batch
                terms, logits = train_step(
                    student, method, teacher, optimizer, images, labels, indices, epoch,
                    device=device, precision=precision, channels_last=channels_last,
                    loss_scale=scale,
                )
                seen += labels.numel()
                totals.add(terms, logits, labels)
                if on_progress is not None and step % PROGRESS_EVERY == 0:
                    on_progress(Progress(epoch, step, steps, totals.sums["loss"].item() / seen))
                check = not group.distributed or step % STOP_CHECK_EVERY == 0
                if check and group.any(stop_requested(), device):
                    # the partial epoch is dropped: the last committed checkpoint is the resume
                    # point, and replaying the epoch from it gives the same result bitwise
                    return last
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            metrics = _epoch_metrics(model, totals, seen, elapsed, optimizer, loaders, epoch,
                                     device, precision, channels_last, group)
            on_epoch(epoch, metrics)
            last = epoch
            if group.any(stop_requested(), device):
                break
    except RuntimeError as exc:  # under DDP: did a collective fail because a rank is gone?
        lost = group.peer_lost(exc, f"epoch {epoch}")
        if lost is not None:
            raise lost from None
        raise
    return last
