"""kd (Hinton et al. 2015): L = w_ce·CE + w_kd·T²·KL(p_t ‖ p_s), batchmean, no warm-up."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, added_option, require
from methods.partition_kl import kl_per_sample
from methods.registry import register_method
from methods.standardize import maybe_standardize


@dataclass(frozen=True)
class KDParams:
    """CIFAR defaults; ImageNet: temperature 1, w_ce 0.5, w_kd 0.5."""

    temperature: float = 4.0
    w_ce: float = 0.1
    w_kd: float = 0.9
    standardize: bool = added_option(False)  # LS: z-score both logits first (methods.standardize)

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"kd: temperature={self.temperature} must be > 0")
        require(self.w_ce >= 0, f"kd: w_ce={self.w_ce} must be >= 0")
        require(self.w_kd >= 0, f"kd: w_kd={self.w_kd} must be >= 0")


@register_method(
    "kd",
    title="KD (Hinton et al. 2015, arXiv 1503.02531)",
    note="L = w_ce·CE + w_kd·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)).",
)
class KD(Method):
    Params = KDParams

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        t = p.temperature
        z_s, z_t = maybe_standardize(p.standardize, student, teacher)
        kl = kl_per_sample(z_t / t, z_s / t).mean()
        return {"ce": p.w_ce * F.cross_entropy(student, target), "kd": p.w_kd * t * t * kl}
