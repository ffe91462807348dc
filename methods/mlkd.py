"""mlkd: Multi-Level Logit Distillation (Jin, Wang & Lin, CVPR 2023; code:
Jin-Ying/Multi-Level-Logit-Distillation mdistiller/distillers/KD_ours.py at 5ee473f).

The student and the teacher see a weak (pad-crop-flip) and a strong (+ RandAugment + Cutout) view
of each image. The prediction is aligned at several temperatures τ ∈ {T, 3, 5, 2, 6}:
- instance level: T²-scaled KL(p_t^τ ‖ p_s^τ), batch mean (KD);
- batch level: ‖P_t Pᵀ_t − P_s Pᵀ_s‖² / B, the B×B sample-similarity matrices of the softmax
  rows P at τ;
- class level: ‖Pᵀ_t P_t − Pᵀ_s P_s‖² / C, the C×C class-correlation matrices.
Confidence masking keeps the samples whose teacher confidence (max softmax of the weak view) is at
most the batch median, and the classes whose summed teacher probability is at most the median.

This follows the released code, which produced the published numbers:
- every aligned term is reduced to a batch scalar before the mask is applied, so a mask scales
  its term by the fraction it keeps (about one half), not per sample;
- the strong-view instance term takes T, 3 and 5 on the strong view and 2 and 6 on the weak one;
- the strong-view batch and class terms are computed there but left out of the loss;
- CE is applied to both views.
Terms: ce = w_ce·(CE_weak + CE_strong); kd = w_kd·(masked weak KD + strong KD); cc = w_kd·class
level (weak view, class mask); bc = w_kd·batch level (weak view, sample mask). The released code
runs under DataParallel, so its medians are per GPU shard; here they are over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, Needs, require
from methods.registry import register_method

OTHER_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)  # beside `temperature`, fixed in the released code


@dataclass(frozen=True)
class MLKDParams:
    """mdistiller's KD defaults, which the released configs (configs/cifar100/ours/*.yaml) keep."""

    temperature: float = 4.0
    w_ce: float = 0.1
    w_kd: float = 0.9

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"mlkd: temperature={self.temperature} must be > 0")
        require(self.w_ce >= 0, f"mlkd: w_ce={self.w_ce} must be >= 0")
        require(self.w_kd >= 0, f"mlkd: w_kd={self.w_kd} must be >= 0")


def instance_kd(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    """τ²·mean_b KL(softmax(z_t/τ) ‖ softmax(z_s/τ)), in log space."""
    log_p_t = F.log_softmax(teacher / tau, dim=1)
    log_p_s = F.log_softmax(student / tau, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean() * tau**2


def batch_level(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    p_s, p_t = F.softmax(student / tau, dim=1), F.softmax(teacher / tau, dim=1)
    return ((p_t @ p_t.T - p_s @ p_s.T) ** 2).sum() / student.shape[0]


def class_level(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    p_s, p_t = F.softmax(student / tau, dim=1), F.softmax(teacher / tau, dim=1)
    return ((p_t.T @ p_t - p_s.T @ p_s) ** 2).sum() / student.shape[1]


def kept_fraction(values: Tensor) -> Tensor:
    """The share of `values` at most their median (numpy's linear-interpolation percentile 50)."""
    return (values <= torch.quantile(values, 0.5)).to(values.dtype).mean()


@register_method(
    "mlkd",
    needs=Needs(two_views=True),
    title="MLKD (Jin et al., CVPR 2023)",
    note="Instance-, batch- and class-level alignment at τ ∈ {T,3,5,2,6} on a weak and a strong "
    "view, with confidence masks; two forward passes per step, so not compute-matched to KD.",
)
class MLKD(Method):
    Params = MLKDParams

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        b = target.numel()
        s_weak, s_strong = student[:b], student[b:]
        t_weak, t_strong = teacher[:b], teacher[b:]
        p_teacher = F.softmax(t_weak.detach(), dim=1)
        sample_kept = kept_fraction(p_teacher.max(dim=1).values)
        class_kept = kept_fraction(p_teacher.sum(dim=0))
        taus = (p.temperature, *OTHER_TEMPERATURES)
        kd_weak = sum(instance_kd(s_weak, t_weak, tau) for tau in taus) * sample_kept
        strong_pairs = [(s_strong, t_strong)] * 3 + [(s_weak, t_weak)] * 2
        kd_strong = sum(instance_kd(s, t, tau) for (s, t), tau in zip(strong_pairs, taus,
                                                                       strict=True))
        cc = sum(class_level(s_weak, t_weak, tau) for tau in taus) * class_kept
        bc = sum(batch_level(s_weak, t_weak, tau) for tau in taus) * sample_kept
        return {
            "ce": p.w_ce * (F.cross_entropy(s_weak, target) + F.cross_entropy(s_strong, target)),
            "kd": p.w_kd * (kd_weak + kd_strong),
            "cc": p.w_kd * cc,
            "bc": p.w_kd * bc,
        }
