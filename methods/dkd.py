"""dkd (Zhao et al. 2022): L = w_ce·CE + warmup_factor·T²·(α·TCKD + β·NCKD), batchmean.

TCKD is the binary KL of [p_y, 1 − p_y]; NCKD the KL of the softmax over the non-target classes,
i.e. the partition S = {y} of `partition_kl`. The warm-up scales the distillation, not CE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, added_option, require, warmup_factor
from methods.partition_kl import partition_kl
from methods.registry import register_method
from methods.standardize import maybe_standardize


@dataclass(frozen=True)
class DKDParams:
    """CIFAR defaults; beta is per pair (mdistiller configs/cifar100/dkd/*.yaml, DKD paper
    Zhao et al. CVPR 2022, supplement). ImageNet: temperature 1, warmup 1."""

    temperature: float = 4.0
    w_ce: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0
    warmup: int = 20
    standardize: bool = added_option(False)  # LS: z-score both logits first (methods.standardize)

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"dkd: temperature={self.temperature} must be > 0")
        require(self.warmup >= 1, f"dkd: warmup={self.warmup} must be >= 1 (1 means none)")
        for key in ("w_ce", "alpha", "beta"):
            require(getattr(self, key) >= 0, f"dkd: {key}={getattr(self, key)} must be >= 0")


@register_method(
    "dkd",
    title="DKD (Zhao et al. 2022, arXiv 2203.08679)",
    note="L = w_ce·CE + warm-up·T²·(α·TCKD + β·NCKD): target and non-target KL decoupled.",
)
class DKD(Method):
    Params = DKDParams

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        t = p.temperature
        scale = warmup_factor(epoch, p.warmup) * t * t
        target_mask = F.one_hot(target, student.shape[1]).to(torch.bool)
        z_s, z_t = maybe_standardize(p.standardize, student, teacher)
        parts = partition_kl(z_t / t, z_s / t, target_mask)
        return {
            "ce": p.w_ce * F.cross_entropy(student, target),
            "tckd": scale * p.alpha * parts.binary.mean(),
            "nckd": scale * p.beta * parts.inside_w.mean(),
        }
