"""cakd, kdbench's reading of Correlation-Aware KD (arXiv 2410.14741): BCD, SCD, WCD.

S = {y} ∪ the k non-target classes with the largest teacher logits (ties in index order), W = rest.
KL(p_t ‖ p_s) = BCD + P_t,S·SCD + P_t,W·WCD exactly (see `partition_kl`), and
L = w_ce·CE + w_kd·warmup_factor·T²·mean_batch(w_bcd·BCD + w_scd·SCD + w_wcd·WCD).
A switched-off term is left out of the returned dict. `weights="natural"` uses w_bcd = 1,
w_scd = P_t,S, w_wcd = P_t,W per sample (detached), which makes the sum T²·KL; the w_bcd, w_scd
and w_wcd parameters are then ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import Method, added_option, require, warmup_factor
from methods.partition_kl import partition_kl
from methods.registry import register_method
from methods.standardize import maybe_standardize


@dataclass(frozen=True)
class CAKDParams:
    """CIFAR defaults; w_wcd follows the pair's DKD β (mdistiller configs/cifar100/dkd/*.yaml).
    ImageNet: T 1, warmup 1."""

    temperature: float = 4.0
    warmup: int = 20
    w_ce: float = 1.0
    w_kd: float = 1.0
    k: int = 5
    w_bcd: float = 1.0
    w_scd: float = 2.0
    w_wcd: float = 8.0
    bcd: bool = True
    scd: bool = True
    wcd: bool = True
    weights: Literal["given", "natural"] = "given"
    standardize: bool = added_option(False)  # LS: z-score both logits first (methods.standardize)

    def validate(self, num_classes: int | None) -> None:
        require(self.temperature > 0, f"cakd: temperature={self.temperature} must be > 0")
        require(self.warmup >= 1, f"cakd: warmup={self.warmup} must be >= 1 (1 means none)")
        for key in ("w_ce", "w_kd", "w_bcd", "w_scd", "w_wcd"):
            require(getattr(self, key) >= 0, f"cakd: {key}={getattr(self, key)} must be >= 0")
        require(
            self.bcd or self.scd or self.wcd,
            "cakd: bcd, scd and wcd are all false, leaving only cross-entropy; use method 'ce'",
        )
        check_k(self.k, num_classes)


def check_k(k: int, num_classes: int | None) -> None:
    if num_classes is None:
        require(k >= 0, f"cakd: k={k} must be >= 0 (at most num_classes - 2)")
    else:
        require(
            0 <= k <= num_classes - 2,
            f"cakd: k={k} out of range 0..{num_classes - 2} for num_classes={num_classes}",
        )


def strong_mask(teacher_logits: Tensor, target: Tensor, k: int) -> Tensor:
    """[B, C] bool: the target plus the k non-target classes the teacher ranks highest.

    Ties at the k-th value are broken in index order, which topk alone does not promise.
    """
    is_target = torch.zeros_like(teacher_logits, dtype=torch.bool)
    is_target.scatter_(1, target.unsqueeze(1), True)
    if k == 0:
        return is_target
    others = teacher_logits.masked_fill(is_target, float("-inf"))
    kth = others.topk(k, dim=1).values[:, -1:]
    above = others > kth
    tied = (others == kth) & ~is_target
    wanted = k - above.sum(dim=1, keepdim=True)
    return is_target | above | (tied & (tied.cumsum(dim=1) <= wanted))


@register_method(
    "cakd",
    title="kdbench's reading of CAKD (arXiv 2410.14741)",
    note=(
        "The paper gives neither a formula for its strong set nor code nor per-pair numbers; "
        "kdbench takes the strong set as the target plus the teacher's top-k other classes "
        "(k = 5) and weights BCD / SCD / WCD 1 / 2 / the pair's DKD β, so no published "
        "number is compared with it."
    ),
)
class CAKD(Method):
    Params = CAKDParams

    def terms(
        self, student: Tensor, teacher: Tensor | None, target: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        p = self.params
        check_k(p.k, student.shape[1])
        t = p.temperature
        scale = p.w_kd * warmup_factor(epoch, p.warmup) * t * t
        z_s, z_t = maybe_standardize(p.standardize, student, teacher)
        # z-scoring is monotone per row: the teacher's top-k, and so the strong set, is unchanged
        parts = partition_kl(z_t / t, z_s / t, strong_mask(teacher, target, p.k))
        if p.weights == "natural":
            weight = {
                "bcd": 1.0,
                "scd": parts.teacher_mass_s.detach(),
                "wcd": parts.teacher_mass_w.detach(),
            }
        else:
            weight = {"bcd": p.w_bcd, "scd": p.w_scd, "wcd": p.w_wcd}
        raw = {"bcd": parts.binary, "scd": parts.inside_s, "wcd": parts.inside_w}
        out = {"ce": p.w_ce * F.cross_entropy(student, target)}
        for key in ("bcd", "scd", "wcd"):
            if getattr(p, key):
                out[key] = scale * (weight[key] * raw[key]).mean()
        return out
