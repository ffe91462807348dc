"""Logit standardization (Sun et al., CVPR 2024, arXiv 2403.01427; code: sunshangquan/
logit-standardization-KD mdistiller/distillers/KD.py `normalize`): each sample's logits become
z-scores, (z − mean) / (std + 1e-7) with the unbiased std over classes, before the temperature.
A switch (`standardize`) of kd, dkd and cakd; the authors run KD+LS at T 2 and KD weight 9
(README: `--logit-stand --base-temp 2 --kd-weight 9`).
"""

from __future__ import annotations

from torch import Tensor

EPSILON = 1e-7  # the released code's, added to the std


def standardize(logits: Tensor) -> Tensor:
    """Per-sample z-score of [B, C] logits: invariant to a shift and a positive scale of a row."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + EPSILON)


def maybe_standardize(on: bool, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    return (standardize(student), standardize(teacher)) if on else (student, teacher)
