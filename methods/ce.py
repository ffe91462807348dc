"""ce: the student alone, cross-entropy with the labels; no teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, Needs
from methods.registry import register_method


@dataclass(frozen=True)
class CEParams:
    def validate(self, num_classes: int | None) -> None:
        pass


@register_method("ce", needs=Needs(teacher=False), title="CE: the student alone")
class CE(Method):
    Params = CEParams

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(student, target)}
