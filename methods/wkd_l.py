"""wkd_l: Wasserstein logit distillation, WKD-L (Lv et al., NeurIPS 2024, arXiv 2412.08139;
code: JiamingLv/WKD mdistiller/distillers/WKD.py).

L = w_ce·CE − mean_b t_y·log s_y + w(epoch)·mean_b W_ε(ŝ, t̂), where ŝ, t̂ are the softmax at
temperature T over the non-target classes (target removed, as NKD does), W_ε is the entropic
Wasserstein distance Σ flow·cost after `sinkhorn_iterations` Sinkhorn steps at regularization ε,
and the cost between classes is 1 − exp(−sharpen·(1 − cos(w_i, w_j))) from the rows w of the
teacher's classifier (the released code's `COST_MATRIX: fc` with `COST_MATRIX_SHARPEN`), computed
once in `prepare`. w(epoch) decays by a half cosine from `decay_start` to `decay_end`.

The Sinkhorn steps run in log space: with the released code's 1e-8 added to each denominator
(kept, as log-add-exp, so the numbers are the same) they stay finite at ε = 0.05, where
exp(−cost/ε) spans nine orders of magnitude. The released CIFAR configs use a CKA cost matrix
computed from features and shipped as a file; the classifier cost is its `fc` option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, MethodContext, Needs, require
from methods.registry import register_method

DENOMINATOR_EPSILON = 1e-8  # the released code's, in both Sinkhorn divisions
COST_FLOOR = 1e-8  # the released code: relu(cost) + 1e-8


@dataclass(frozen=True)
class WKDLParams:
    """The released CIFAR-100 config configs/cifar100/wkd_l/res32x4_res8x4.yaml."""

    temperature: float = 8.0
    w_ce: float = 1.0
    w_wd: float = 600.0  # WKD_LOGIT_WEIGHT
    sinkhorn_lambda: float = 0.05  # ε
    sinkhorn_iterations: int = 10
    sharpen: float = 1.0  # COST_MATRIX_SHARPEN (0: the cosine distance as it is)
    decay_start: int = 150  # COSINE_DECAY_EPOCH
    decay_end: int = 240  # the recipe's epochs

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"wkd_l: temperature={self.temperature} must be > 0")
        require(self.w_ce >= 0 and self.w_wd >= 0, "wkd_l: w_ce and w_wd must be >= 0")
        require(self.sinkhorn_lambda > 0, "wkd_l: sinkhorn_lambda must be > 0")
        require(self.sinkhorn_iterations >= 1, "wkd_l: sinkhorn_iterations must be >= 1")
        require(self.sharpen >= 0, "wkd_l: sharpen must be >= 0")
        require(
            1 <= self.decay_start < self.decay_end,
            f"wkd_l: expected 1 <= decay_start < decay_end, got {self.decay_start}, "
            f"{self.decay_end}",
        )


def class_cost(classifier_weight: Tensor, sharpen: float) -> Tensor:
    """[C, C] cost between classes from the teacher's classifier rows."""
    unit = F.normalize(classifier_weight, p=2, dim=-1)
    distance = 1 - unit @ unit.T
    return 1 - torch.exp(-sharpen * distance) if sharpen != 0 else distance


def sinkhorn_distance(
    log_a: Tensor, log_b: Tensor, cost: Tensor, reg: float, iterations: int
) -> Tensor:
    """[B] Σ_ij flow_ij·cost_ij of the entropic transport from a to b, in log space."""
    log_eps = math.log(DENOMINATOR_EPSILON)
    log_k = -cost / reg
    log_u = torch.full_like(log_a, -math.log(log_a.shape[1]))
    for _ in range(iterations):
        k_t_u = torch.logsumexp(log_k + log_u.unsqueeze(2), dim=1)
        log_v = log_b - torch.logaddexp(k_t_u, torch.full_like(k_t_u, log_eps))
        k_v = torch.logsumexp(log_k + log_v.unsqueeze(1), dim=2)
        log_u = log_a - torch.logaddexp(k_v, torch.full_like(k_v, log_eps))
    flow = torch.exp(log_u.unsqueeze(2) + log_k + log_v.unsqueeze(1))
    return (flow * cost).sum(dim=(1, 2))


@register_method(
    "wkd_l",
    needs=Needs(teacher=True, teacher_classifier=True),
    title="WKD-L (Lv et al., NeurIPS 2024, arXiv 2412.08139)",
    note=(
        "Target term −t_y·log s_y plus the entropic Wasserstein distance between the non-target "
        "distributions, class costs from the teacher's classifier."
    ),
)
class WKDL(Method):
    Params = WKDLParams

    def __init__(self, params: WKDLParams, num_classes: int | None = None) -> None:
        super().__init__(params, num_classes)
        self.register_buffer("cost", torch.zeros(0), persistent=False)  # set in prepare

    def prepare(self, context: MethodContext) -> None:
        weight = context.teacher_classifier.weight.detach().to(torch.float64)
        require(
            weight.shape[0] == context.num_classes,
            f"wkd_l: the teacher's classifier has {weight.shape[0]} rows, the data "
            f"{context.num_classes} classes",
        )
        self.cost = class_cost(weight, self.params.sharpen).float().to(context.device)

    def set_cost(self, cost: Tensor) -> None:
        """Set the class cost directly (tests, or a cost matrix of one's own)."""
        self.cost = cost

    def weight_at(self, epoch: int) -> float:
        p = self.params
        if epoch <= p.decay_start:
            return p.w_wd
        progress = min((epoch - p.decay_start) / (p.decay_end - p.decay_start), 1.0)
        return 0.5 * p.w_wd * (1 + math.cos(progress * math.pi))

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        require(self.cost.numel() > 0, "wkd_l: no class cost; the engine calls prepare() first")
        n, c = student.shape
        index = target.view(-1, 1)
        t_target = torch.softmax(teacher, dim=1).gather(1, index).detach()
        log_s_target = torch.log_softmax(student, dim=1).gather(1, index)
        keep = torch.ones_like(student, dtype=torch.bool).scatter_(1, index, False)
        cost = self.cost.to(student.dtype).clamp_min(0) + COST_FLOOR
        pair_keep = keep.unsqueeze(1) & keep.unsqueeze(2)
        cost = cost.expand(n, c, c)[pair_keep].view(n, c - 1, c - 1)
        log_s = torch.log_softmax(student[keep].view(n, c - 1) / p.temperature, dim=1)
        log_t = torch.log_softmax(teacher[keep].view(n, c - 1) / p.temperature, dim=1)
        distance = sinkhorn_distance(log_s, log_t, cost, p.sinkhorn_lambda, p.sinkhorn_iterations)
        return {
            "ce": p.w_ce * F.cross_entropy(student, target),
            "target": -(t_target * log_s_target).mean(),
            "wd": self.weight_at(epoch) * distance.mean(),
        }
