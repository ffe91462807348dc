"""ttm and wttm: Transformed Teacher Matching (Zheng & Yang, ICLR 2024, arXiv 2402.11148; code:
zkxufo/TTM distiller_zoo/{ttm,wttm}.py).

Only the teacher is tempered, by a power transform: p̂_t ∝ p_t^γ, i.e. p̂_t = softmax(γ·z_t), and
the student is matched at temperature 1: L = w_ce·CE + w_kd·mean_b KL(p̂_t ‖ p_s). WTTM weights
each sample's KL by its teacher power sum U_γ(p_t) = Σ_j p_t,j^γ (large for flat teacher outputs).
In log space: log p̂_t = log_softmax(γ·z_t) and log U_γ = logsumexp(γ·log_softmax(z_t)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, require
from methods.partition_kl import kl_per_sample
from methods.registry import register_method


@dataclass(frozen=True)
class TTMParams:
    """The authors' README example (vgg13 -> vgg8: --ttm_l 0.1 -r 1 -b 45); their per-pair values
    are in the paper's appendix, not in the released scripts."""

    gamma: float = 0.1  # the power γ (--ttm_l); γ = 1/T matches the teacher side of KD at T
    w_ce: float = 1.0  # -r
    w_kd: float = 45.0  # -b

    def validate(self, num_classes: int | None) -> None:
        require(self.gamma > 0, f"ttm: gamma={self.gamma} must be > 0")
        require(self.w_ce >= 0, f"ttm: w_ce={self.w_ce} must be >= 0")
        require(self.w_kd >= 0, f"ttm: w_kd={self.w_kd} must be >= 0")


@register_method(
    "ttm",
    title="TTM (Zheng & Yang, ICLR 2024, arXiv 2402.11148)",
    note="L = w_ce·CE + w_kd·KL(softmax(γ·z_t) ‖ softmax(z_s)): only the teacher is tempered.",
)
class TTM(Method):
    Params = TTMParams

    def sample_weights(self, teacher: Tensor) -> Tensor | float:
        return 1.0

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        kl = kl_per_sample(p.gamma * teacher, student)  # KL(softmax(γ·z_t) ‖ softmax(z_s))
        return {
            "ce": p.w_ce * F.cross_entropy(student, target),
            "kd": p.w_kd * (self.sample_weights(teacher) * kl).mean(),
        }


@register_method(
    "wttm",
    title="WTTM (Zheng & Yang, ICLR 2024, arXiv 2402.11148)",
    note="TTM with each sample's KL weighted by the teacher power sum Σ_j p_t,j^γ.",
)
class WTTM(TTM):
    def sample_weights(self, teacher: Tensor) -> Tensor:
        """U_γ(p_t) = Σ_j p_t,j^γ per sample, from log-probabilities."""
        gamma = self.params.gamma
        return torch.logsumexp(gamma * torch.log_softmax(teacher, dim=1), dim=1).exp()
