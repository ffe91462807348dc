"""kd_dot: KD trained by the Distillation-Oriented Trainer (Zhao et al., ICCV 2023, arXiv
2307.08436; code: mdistiller mdistiller/engine/dot.py and trainer.py `DOT`).

The loss is KD's. DOT keeps two momentum buffers: the task (CE) gradient, with weight decay,
accumulates with momentum μ − Δ, and the distillation gradient with μ + Δ; each step applies both,
p ← p − lr·b_task − lr·b_kd. With Δ = 0 this is SGD on the summed loss. A parameter that gets only
one of the two gradients uses (μ_task + μ_kd) / 2, weight decay going with whichever it gets (a
distillation-only parameter's from its second step, as the reference code's buffer starts). The
two gradients come from two backward passes (distillation first, the graph kept, then the task).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods.base import Needs, added_option, require
from methods.kd import KD
from methods.registry import register_method


@dataclass(frozen=True)
class KDDOTParams:
    """KD's CIFAR defaults; Δ from mdistiller's engine/cfg.py (SOLVER.DOT.DELTA = 0.075)."""

    temperature: float = 4.0
    w_ce: float = 0.1
    w_kd: float = 0.9
    delta: float = 0.075
    standardize: bool = added_option(False)  # LS, as on kd (methods.standardize)

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"kd_dot: temperature={self.temperature} must be > 0")
        require(self.w_ce >= 0 and self.w_kd >= 0, "kd_dot: w_ce and w_kd must be >= 0")
        require(self.delta >= 0, f"kd_dot: delta={self.delta} must be >= 0")


class DistillationOrientedTrainer(torch.optim.Optimizer):
    """SGD with separate task and distillation momentum (one parameter group).

    Call `keep_distillation_gradients()` after the distillation backward, zero the gradients, run
    the task backward, then `step()`.
    """

    def __init__(self, params, *, lr: float, momentum_task: float, momentum_kd: float,
                 weight_decay: float = 0.0):
        super().__init__(
            params,
            {"lr": lr, "momentum_task": momentum_task, "momentum_kd": momentum_kd,
             "weight_decay": weight_decay},
        )
        require(len(self.param_groups) == 1, "DOT: one parameter group only")
        self._kd_gradients: dict[Tensor, Tensor] = {}

    @torch.no_grad()
    def keep_distillation_gradients(self) -> None:
        params = self.param_groups[0]["params"]
        self._kd_gradients = {p: p.grad for p in params if p.grad is not None}

    @staticmethod
    def _accumulate(state: dict, key: str, gradient: Tensor, momentum: float) -> Tensor:
        if key not in state:
            state[key] = gradient.detach().clone()
        else:
            state[key].mul_(momentum).add_(gradient)
        return state[key]

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0]
        lr, decay = group["lr"], group["weight_decay"]
        mu_task, mu_kd = group["momentum_task"], group["momentum_kd"]
        mu_mean = (mu_task + mu_kd) / 2
        kd = self._kd_gradients
        params = group["params"]
        for p in params:  # the task gradients first, as the reference code does
            if p.grad is None:
                continue
            gradient = p.grad.add(p, alpha=decay) if decay else p.grad
            momentum = mu_task if p in kd else mu_mean
            p.add_(self._accumulate(self.state[p], "task", gradient, momentum), alpha=-lr)
        for p in params:
            if p not in kd:
                continue
            gradient, momentum = kd[p], mu_kd
            if p.grad is None:  # only the distillation reaches it: it carries the decay, from
                # its second step on, as mdistiller's dot() (the first step starts the buffer)
                if decay and "kd" in self.state[p]:
                    gradient = gradient.add(p, alpha=decay)
                momentum = mu_mean
            p.add_(self._accumulate(self.state[p], "kd", gradient, momentum), alpha=-lr)
        self._kd_gradients = {}


@register_method(
    "kd_dot",
    needs=Needs(teacher=True, optimizer=True),
    title="KD + DOT (Zhao et al., ICCV 2023, arXiv 2307.08436)",
    note="KD's loss; task and distillation gradients keep separate momenta, μ − Δ and μ + Δ.",
)
class KDDOT(KD):
    Params = KDDOTParams

    def make_optimizer(
        self, parameters: list, *, lr: float, momentum: float, weight_decay: float, nesterov: bool
    ) -> torch.optim.Optimizer:
        require(not nesterov, "kd_dot: DOT has no Nesterov variant; set recipe.nesterov false")
        delta = self.params.delta
        require(delta <= momentum, f"kd_dot: delta={delta} exceeds the momentum {momentum}")
        require(
            momentum + delta < 1,
            f"kd_dot: momentum {momentum} + delta {delta} must stay below 1 (the distillation "
            "momentum would make its buffer grow without bound)",
        )
        return DistillationOrientedTrainer(
            parameters, lr=lr, momentum_task=momentum - delta, momentum_kd=momentum + delta,
            weight_decay=weight_decay,
        )

    def step(self, terms: dict[str, Tensor], optimizer: torch.optim.Optimizer) -> None:
        distillation = sum(value for name, value in terms.items() if name not in ("loss", "ce"))
        distillation.backward(retain_graph=True)
        optimizer.keep_distillation_gradients()
        optimizer.zero_grad(set_to_none=True)
        terms["ce"].backward()
        optimizer.step()
