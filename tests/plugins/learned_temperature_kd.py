"""A test-only method that exercises the whole method contract (loaded through $KDBENCH_PLUGINS):
it needs the teacher and the teacher's classifier weights, learns a parameter (its temperature)
and keeps state it builds in `prepare` (a class-similarity matrix from the teacher's classifier).

L = w_ce·CE + w_kd·T²·KL(p_t^T ‖ p_s^T) + w_sim·KL(p_t^T·S ‖ p_s^T), T = exp(log_temperature)
learned with the student, T² detached; S = softmax(cos(W_t) / 0.1) row-wise over the classes.
No file but this one names the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods import Method, MethodContext, Needs, register_method
from methods.base import require
from methods.partition_kl import kl_per_sample


@dataclass(frozen=True)
class LearnedTemperatureParams:
    initial_temperature: float = 4.0
    w_ce: float = 1.0
    w_kd: float = 1.0
    w_sim: float = 0.5

    def validate(self, num_classes: int | None) -> None:
        require(self.initial_temperature > 0, "initial_temperature must be > 0")


@register_method(
    "learned_t_kd",
    needs=Needs(teacher=True, teacher_classifier=True, learnable=True, state=True),
)
class LearnedTemperatureKD(Method):
    Params = LearnedTemperatureParams

    def __init__(self, params: LearnedTemperatureParams, num_classes: int | None = None) -> None:
        super().__init__(params, num_classes)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(params.initial_temperature)))
        self.register_buffer("class_similarity", torch.zeros(0))

    def prepare(self, context: MethodContext) -> None:
        weight = context.teacher_classifier.weight.detach().float()
        require(weight.shape[0] == context.num_classes, "classifier rows != num_classes")
        unit = F.normalize(weight, dim=1)
        self.class_similarity = torch.softmax(unit @ unit.T / 0.1, dim=1)

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        t = self.log_temperature.exp()
        kd = kl_per_sample(teacher / t, student / t).mean()
        smoothed = torch.softmax(teacher / t, dim=1) @ self.class_similarity
        log_student = torch.log_softmax(student / t, dim=1)
        sim = (smoothed * (smoothed.clamp_min(1e-12).log() - log_student)).sum(dim=1).mean()
        return {
            "ce": p.w_ce * F.cross_entropy(student, target),
            "kd": p.w_kd * t.detach() ** 2 * kd,
            "sim": p.w_sim * sim,
        }
