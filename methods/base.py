"""The Method contract: a loss of logits that returns its named, weighted terms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class MethodError(ValueError):
    """A bad method name, parameter or value; the message is one line a user can act on."""


def check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise MethodError(f"epoch must be a 1-based integer >= 1, got {epoch!r}")


def warmup_factor(epoch: int, warmup: int) -> float:
    """min(epoch / warmup, 1) for the 1-based integer epoch; constant within an epoch."""
    check_epoch(epoch)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise MethodError(f"warmup must be an integer >= 1, got {warmup!r}")
    return min(epoch / warmup, 1.0)


ADDED_OPTION = "added_option"


def added_option(default: Any) -> Any:
    """A parameter added to a method after its cells were first keyed: at its default it is left
    out of the resolved parameters, so those cells keep their keys; it is never an ablation
    switch."""
    return dataclasses.field(default=default, metadata={ADDED_OPTION: True})


def require(condition: bool, message: str) -> None:
    """Raise MethodError(message) unless condition holds (parameter validation)."""
    if not condition:
        raise MethodError(message)


def as_float(logits: Tensor) -> Tensor:
    """float32 at the method's entry; float64 stays float64 (golden values and gradcheck)."""
    return logits if logits.dtype == torch.float64 else logits.float()


@dataclass(frozen=True)
class Needs:
    """What a method needs from the engine, declared at registration; the engine honours each."""

    teacher: bool = True  # teacher logits for every batch
    teacher_classifier: bool = False  # the teacher's last linear layer, given to `prepare`
    # two augmented views per image: the logits given are those of the weak views [B], then of
    # the strong views [B]; the target is [B]
    two_views: bool = False
    learnable: bool = False  # own parameters, optimized with the student's and checkpointed
    state: bool = False  # own buffers (set in `prepare` or during training), checkpointed
    optimizer: bool = False  # its own optimizer and step (`make_optimizer`, `step`), e.g. DOT


@dataclass(frozen=True)
class MethodContext:
    """What `Method.prepare` is given before training: the frozen teacher and the data facts."""

    num_classes: int
    train_size: int
    dataset: str
    device: torch.device
    teacher: nn.Module | None = None
    teacher_classifier: nn.Linear | None = None  # when the method declares needs.teacher_classifier


class Method(nn.Module):
    """Base of every loss method.

    Subclasses implement `terms`, returning each weighted component as it enters the loss;
    `forward` adds "loss", their sum, so the components always add up to the loss.
    """

    name: ClassVar[str] = ""  # set by register_method
    needs: ClassVar[Needs] = Needs()  # set by register_method
    title: ClassVar[str] = ""  # set by register_method: the method's name with its source
    note: ClassVar[str] = ""  # set by register_method: what a reader must know, one sentence
    Params: ClassVar[type]  # frozen dataclass of defaults with a validate(num_classes) method

    def __init__(self, params: Any, num_classes: int | None = None) -> None:
        super().__init__()
        self.params = params
        self.num_classes = num_classes

    def prepare(self, context: MethodContext) -> None:
        """Called once by the engine before training (and before a checkpoint is restored)."""

    def make_optimizer(
        self, parameters: list, *, lr: float, momentum: float, weight_decay: float, nesterov: bool
    ) -> torch.optim.Optimizer:
        """The optimizer of a method that declares `needs.optimizer` (the recipe's SGD settings
        given); its state is checkpointed as the engine's SGD state is."""
        raise NotImplementedError(f"method '{self.name}' declares no optimizer of its own")

    def step(self, terms: dict[str, Tensor], optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimizer step after the engine zeroed the gradients; a method with its
        own optimizer may split the loss (e.g. DOT: the distillation terms, then the task)."""
        terms["loss"].backward()
        optimizer.step()

    def forward(
        self, student_logits: Tensor, teacher_logits: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        if self.needs.teacher and teacher_logits is None:
            raise MethodError(f"method '{self.name}' needs teacher_logits, got None")
        check_epoch(epoch)
        student = as_float(student_logits)
        teacher = None if teacher_logits is None else as_float(teacher_logits).to(student.dtype)
        # Autocast would otherwise be free to run some ops in bf16/fp16 inside the loss.
        with torch.autocast(device_type=student.device.type, enabled=False):
            components = self.terms(student, teacher, target.long(), epoch)
        loss = torch.zeros((), dtype=student.dtype, device=student.device)
        for value in components.values():
            loss = loss + value
        return {"loss": loss, **components}

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        raise NotImplementedError
