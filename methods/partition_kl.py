"""KL divergence and its exact decomposition over a two-group partition of the classes.

For a boolean mask S [B, C] (W = not S), per sample:
    KL(p_t || p_s) = binary + P_t,S * inside_S + P_t,W * inside_W
with binary = KL([P_t,S, P_t,W] || [P_s,S, P_s,W]) and inside_g the KL between the softmaxes
renormalized inside group g. DKD is the partition S = {y}; CAKD is S = {y} + teacher's top-k.
Each group's log-softmax is taken with that group's own max as the shift, so it is exact at any
logit scale; a singleton group contributes exactly 0 inside and an empty group 0 everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class PartitionKL(NamedTuple):
    binary: Tensor  # [B] KL between the group masses
    inside_s: Tensor  # [B] KL inside the group S (mask True)
    inside_w: Tensor  # [B] KL inside the group W (mask False)
    teacher_mass_s: Tensor  # [B] P_t,S
    teacher_mass_w: Tensor  # [B] P_t,W


def kl_per_sample(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """[B] KL(softmax(teacher) || softmax(student)), summed over classes."""
    log_p_t = torch.log_softmax(teacher_logits, dim=1)
    log_p_s = torch.log_softmax(student_logits, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)


class _Groups(NamedTuple):
    log_q: Tensor  # [B, C] log-softmax of each class inside its own group
    odds: Tensor  # [B] lse_S - lse_W, the log-odds of group S (0 where a group is empty)


def _peak(logits: Tensor, group: Tensor, nonempty: Tensor) -> Tensor:
    """[B, 1] max logit of the group: the shift of its logsumexp (detached, value-neutral)."""
    peak = torch.where(group, logits, float("-inf")).amax(dim=1, keepdim=True)
    return torch.where(nonempty, peak, 0.0).detach()


def _group_log_softmax(logits: Tensor, mask: Tensor, both: Tensor) -> _Groups:
    """Log-softmax inside S and inside W at once, and the log-odds between the two groups."""
    has_s, has_w = mask.any(dim=1, keepdim=True), (~mask).any(dim=1, keepdim=True)
    peak_s, peak_w = _peak(logits, mask, has_s), _peak(logits, ~mask, has_w)
    exp = torch.exp(logits - torch.where(mask, peak_s, peak_w))
    sum_s = torch.where(mask, exp, 0.0).sum(dim=1, keepdim=True)
    sum_w = torch.where(mask, 0.0, exp).sum(dim=1, keepdim=True)
    # An empty group has peak -inf and sum 0: 0 and 1 are swapped in (double-where) so every
    # intermediate stays finite and no gradient rests on where() hiding a 0·inf.
    lse_s = peak_s + torch.where(has_s, sum_s, 1.0).log()
    lse_w = peak_w + torch.where(has_w, sum_w, 1.0).log()
    log_q = logits - torch.where(mask, lse_s, lse_w)
    return _Groups(log_q, torch.where(both, (lse_s - lse_w).squeeze(1), 0.0))


def _log_sigmoid(x: Tensor) -> Tensor:
    """log(1 / (1 + exp(-x))), accurate in both tails and with the right gradient at 0."""
    return -torch.logaddexp(torch.zeros_like(x), -x)


def partition_kl(teacher_logits: Tensor, student_logits: Tensor, mask: Tensor) -> PartitionKL:
    """Decompose KL(softmax(teacher) || softmax(student)) over the partition (mask, ~mask).

    Logits are [B, C] and already divided by the temperature; mask is a [B, C] bool tensor.
    """
    mask = mask.to(torch.bool)
    has_s = mask.any(dim=1)
    both = has_s & (~mask).any(dim=1)
    teacher = _group_log_softmax(teacher_logits, mask, both)
    student = _group_log_softmax(student_logits, mask, both)

    pointwise = teacher.log_q.exp() * (teacher.log_q - student.log_q)
    inside_s = torch.where(mask, pointwise, 0.0).sum(dim=1)
    inside_w = torch.where(mask, 0.0, pointwise).sum(dim=1)

    # The group masses are sigmoids of the log-odds. Taking their logs as logsigmoid keeps a
    # tiny P_W accurate, where lse_W - lse(all classes) would cancel.
    log_mass_t_s, log_mass_t_w = _log_sigmoid(teacher.odds), _log_sigmoid(-teacher.odds)
    log_mass_s_s, log_mass_s_w = _log_sigmoid(student.odds), _log_sigmoid(-student.odds)
    binary = log_mass_t_s.exp() * (log_mass_t_s - log_mass_s_s) + log_mass_t_w.exp() * (
        log_mass_t_w - log_mass_s_w
    )
    # with one group empty, that group has mass 0 and the binary KL is 0
    mass_t_s = torch.where(both, log_mass_t_s.exp(), has_s.to(binary.dtype))
    mass_t_w = torch.where(both, log_mass_t_w.exp(), (~has_s).to(binary.dtype))
    return PartitionKL(torch.where(both, binary, 0.0), inside_s, inside_w, mass_t_s, mass_t_w)
