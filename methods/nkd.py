"""nkd: Normalized KD (Yang et al., ICCV 2023, arXiv 2303.13005; code: yzd-v/cls_KD
mmcls/models/dis_losses/nkd.py).

L = w_ce·CE − mean_b t_y·log s_y − γ·T²·mean_b Σ_{j≠y} t̂_j·log ŝ_j, where t_y, s_y are the
target probabilities at temperature 1 (t_y detached) and t̂, ŝ the softmax at temperature T over
the non-target logits alone (the non-target distributions renormalized), as in the paper.

The released code's first version (commit e21ad37) built its non-target mask with
`scatter_(1, label, 1)` on a tensor of ones, which masks nothing: its second term ran over all
classes, target included. The current version (9466b3f, `scatter_(1, label, 0)`) masks the target
as the paper does; this file implements the paper and matches 9466b3f.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, require
from methods.registry import register_method


@dataclass(frozen=True)
class NKDParams:
    """The authors' CIFAR-100 config (configs/distillers/cifar100/res34_distill_res18_cifar.py):
    temp 3.0, gamma 3.5; their ImageNet configs use temp 1.0, gamma 1.5."""

    temperature: float = 3.0
    gamma: float = 3.5
    w_ce: float = 1.0

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"nkd: temperature={self.temperature} must be > 0")
        require(self.gamma >= 0, f"nkd: gamma={self.gamma} must be >= 0")
        require(self.w_ce >= 0, f"nkd: w_ce={self.w_ce} must be >= 0")
        require(num_classes is None or num_classes >= 2, "nkd: needs at least 2 classes")


def _non_target(logits: Tensor, target: Tensor) -> Tensor:
    """[B, C-1] the logits of every class but the target, in class order."""
    keep = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target.view(-1, 1), False)
    return logits[keep].view(len(logits), -1)


@register_method(
    "nkd",
    title="NKD (Yang et al., ICCV 2023, arXiv 2303.13005)",
    note="Target term −t_y·log s_y plus γ·T² × CE of the renormalized non-target distributions.",
)
class NKD(Method):
    Params = NKDParams

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        t = p.temperature
        index = target.view(-1, 1)
        log_s_target = torch.log_softmax(student, dim=1).gather(1, index)
        t_target = torch.softmax(teacher, dim=1).gather(1, index).detach()
        log_s_rest = torch.log_softmax(_non_target(student, target) / t, dim=1)
        t_rest = torch.softmax(_non_target(teacher, target) / t, dim=1)
        return {
            "ce": p.w_ce * F.cross_entropy(student, target),
            "target": -(t_target * log_s_target).mean(),
            "non_target": -p.gamma * t * t * (t_rest * log_s_rest).sum(dim=1).mean(),
        }
