"""Logit distillation (classification or token level): Hinton soft-label KL, cross-entropy and their mix, and
the soft target of several teachers combined by one rule (mean, fixed weights, confidence, gold label)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .core import (
    as_bool_mask,
    check_temperature,
    kl_from_log_probs,
    masked_mean,
    tempered_log_probs,
    to_float32,
)
from .tokens import token_divergence

# How the soft targets of several teachers are combined (teacher_weights / combine_teachers).
TEACHER_COMBINATIONS = ("mean", "weighted", "confidence", "gold")


def soft_label_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Hinton soft-target loss: T^2 * KL(p_teacher^T || p_student^T), averaged over valid positions."""
    # Shapes: logits (..., C); `mask` (optional, bool or 0/1) has the leading shape (...), e.g. (B,) for
    # sequence classification or (B, L) for token classification. Each leading position is one
    # "example", so for 2-D logits this is exactly PyTorch's reduction="batchmean"; for (B, L, C) it is
    # the mean over valid tokens (batchmean over B would weight long sequences more).
    log_p_student, log_p_teacher = tempered_log_probs(student_logits, teacher_logits, temperature)
    valid = as_bool_mask(mask, student_logits.shape[:-1], "mask")
    per_position = kl_from_log_probs(log_p_teacher, log_p_student)
    # T^2 keeps the gradient magnitude of the soft term roughly independent of T (Hinton et al. 2015,
    # sec. 2.1: gradients of the softened KL scale as 1/T^2), so alpha means the same thing at any T.
    return masked_mean(per_position, valid) * (temperature**2)


def soft_target_kl(
    student_logits: Tensor,
    target_log_probs: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """T^2 * KL(target || p_student^T) for a soft target given as log-probabilities (e.g. combined teachers)."""
    # Same reduction and T^2 scaling as soft_label_kl; the target is already a distribution (not divided by T).
    check_temperature(temperature)
    if tuple(target_log_probs.shape) != tuple(student_logits.shape):
        raise ValueError(
            f"target has shape {tuple(target_log_probs.shape)}, expected the student's {tuple(student_logits.shape)}"
        )
    log_p_student = F.log_softmax(to_float32(student_logits) / temperature, dim=-1)
    valid = as_bool_mask(mask, student_logits.shape[:-1], "mask")
    per_position = kl_from_log_probs(to_float32(target_log_probs.detach()), log_p_student)
    return masked_mean(per_position, valid) * (temperature**2)


def teacher_weights(
    teacher_logits: Tensor,
    rule: str = "mean",
    weights: Sequence[float] | Tensor | None = None,
    labels: Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Weights (..., K) of K teachers per example, each row summing to 1, by one of TEACHER_COMBINATIONS."""
    # teacher_logits: (..., K, C), the teachers on dim -2. Rules (see DistillConfig.teacher_combination):
    #   mean: 1/K each. weighted: the fixed `weights`, normalised to sum to 1.
    #   confidence: proportional to each teacher's max probability (at T = 1: its own confidence).
    #   gold: proportional to the probability (T = 1) each teacher gives the gold label; rows without one
    #   (labels None or ignore_index) fall back to mean.
    if rule not in TEACHER_COMBINATIONS:
        raise ValueError(f"rule must be one of {TEACHER_COMBINATIONS}, got {rule!r}")
    logits = to_float32(teacher_logits.detach())
    num_teachers = logits.shape[-2]
    uniform = torch.full(logits.shape[:-1], 1.0 / num_teachers, dtype=logits.dtype, device=logits.device)
    if rule == "mean":
        return uniform
    if rule == "weighted":
        if weights is None or len(weights) != num_teachers:
            got = "none" if weights is None else len(weights)
            raise ValueError(
                f"rule 'weighted' needs one weight per teacher: {num_teachers} teachers, {got} weights"
            )
        fixed = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
        if (fixed < 0).any() or not fixed.sum() > 0:
            raise ValueError(f"teacher weights must be >= 0 with a positive sum, got {fixed.tolist()}")
        return (fixed / fixed.sum()).expand_as(uniform)
    probs = logits.softmax(dim=-1)
    if rule == "confidence":
        score = probs.amax(dim=-1)
    else:  # gold
        if labels is None:
            return uniform
        if tuple(labels.shape) != tuple(logits.shape[:-2]):
            raise ValueError(f"labels have shape {tuple(labels.shape)}, expected {tuple(logits.shape[:-2])}")
        has_label = labels != ignore_index
        index = labels.clamp_min(0).long()[..., None, None].expand(*labels.shape, num_teachers, 1)
        score = torch.where(has_label[..., None], probs.gather(-1, index).squeeze(-1), uniform)
    total = score.sum(dim=-1, keepdim=True)
    # A row where every teacher gives the gold label probability 0 (underflow) has no preference: mean.
    return torch.where(total > 0, score / total.clamp_min(torch.finfo(score.dtype).tiny), uniform)


def combine_teachers(
    teacher_logits: Tensor,
    temperature: float = 1.0,
    rule: str = "mean",
    weights: Sequence[float] | Tensor | None = None,
    labels: Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Log of the combined soft target sum_k w_k * softmax(t_k / T): (..., K, C) teacher logits -> (..., C)."""
    # The teachers' softened probabilities are averaged (not their logits, as TextBrewer does): teachers of
    # different architectures put their logits on different scales, their probabilities share one.
    check_temperature(temperature)
    w = teacher_weights(teacher_logits, rule, weights, labels, ignore_index)
    log_p = F.log_softmax(to_float32(teacher_logits.detach()) / temperature, dim=-1)
    # log sum_k w_k p_k in log space; a weight of 0 is log 0 = -inf, which logsumexp skips.
    return torch.logsumexp(log_p + w.log()[..., None], dim=-2)


def hard_label_ce(
    student_logits: Tensor,
    labels: Tensor,
    ignore_index: int = -100,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy against gold labels in float32; rows equal to ignore_index are excluded."""
    # Shapes: logits (..., C), labels (...). Causal-LM callers must apply the usual shift themselves.
    if tuple(labels.shape) != tuple(student_logits.shape[:-1]):
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected {tuple(student_logits.shape[:-1])}"
        )
    num_classes = student_logits.shape[-1]
    logits = to_float32(student_logits).reshape(-1, num_classes)
    flat_labels = labels.reshape(-1).long()
    weight = None if class_weights is None else to_float32(class_weights).to(logits.device)
    # reduction="none" + our own denominator instead of reduction="mean": with every label ignored
    # (e.g. a batch of augmented rows with no gold label) torch's mean is 0 / 0 = NaN, which would wipe
    # out the soft term in distillation_loss. The denominator matches torch's weighted mean exactly:
    # sum over valid rows of weight[label] (or the valid-row count without weights).
    per_row = F.cross_entropy(
        logits,
        flat_labels,
        weight=weight,
        ignore_index=ignore_index,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    valid = flat_labels != ignore_index
    if weight is None:
        denominator = valid.sum().to(per_row.dtype)
    else:
        # clamp_min(0) only makes the gather legal for ignored rows; they are zeroed by `valid`.
        denominator = (weight[flat_labels.clamp_min(0)] * valid).sum()
    safe_denominator = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return per_row.sum() / safe_denominator


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    mask: Tensor | None = None,
    ignore_index: int = -100,
    combination: str = "mean",
    weights: Sequence[float] | Tensor | None = None,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    teacher_topk_indices: Tensor | None = None,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """The one distillation mix: loss = alpha * soft (T^2-scaled divergence) + (1 - alpha) * hard (CE on labels)."""
    # `alpha` weights the SOFT (teacher) term; alpha=1 is pure distillation, alpha=0 pure fine-tuning.
    # The soft term is T^2 * KL(teacher_T || student_T) (soft_label_kl), or, for token-level callers, T^2 *
    # `divergence` ('reverse_kl', 'jsd' with `beta`, see token_divergence; over the teacher's top-k tokens when
    # teacher_topk_indices is given): T^2 is applied here once, whatever the divergence (module docstring).
    # labels=None (e.g. augmented rows without gold labels): loss = soft alone (not alpha * soft), and
    # the "hard" key is absent. Rows whose label is `ignore_index` enter the soft mean but not the hard
    # mean; if *every* row is unlabelled the loss falls back to soft alone, so a fully unlabelled batch
    # gives the same loss whether its labels are None or all ignore_index. `mask` (optional, leading
    # dims) removes padding positions from both terms (a causal LM passes labels != ignore_index).
    # chunk_size (token-level callers): the divergence over that many positions at a time, the same value
    # in bounded memory (chunked_token_divergence).
    # The hard term takes `class_weights` (C,) and `label_smoothing` as F.cross_entropy does.
    # Several teachers: teacher_logits (..., K, C) for student logits (..., C); their soft targets are
    # combined by `combination` (and `weights`, see combine_teachers) into the one target of the KL term.
    # A teacher with FEWER classes than the student (..., C_old), e.g. the previous model of an incremental
    # update (Learning without Forgetting), teaches the student's first C_old logits; the hard term covers all.
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (it weights the soft term), got {alpha}")
    valid_mask = as_bool_mask(mask, student_logits.shape[:-1], "mask")
    if teacher_logits.dim() == student_logits.dim() + 1:
        target = combine_teachers(teacher_logits, temperature, combination, weights, labels, ignore_index)
        soft = soft_target_kl(student_logits, target, temperature=temperature, mask=mask)
    elif divergence != "forward_kl" or teacher_topk_indices is not None or chunk_size is not None:
        # token_divergence masks by labels only: positions outside `mask` get ignore_index, the rest any
        # other value (it reads them as a mask, never as classes).
        positions = torch.full(
            student_logits.shape[:-1], ignore_index + 1, dtype=torch.long, device=student_logits.device
        )
        if valid_mask is not None:
            positions = positions.masked_fill(~valid_mask, ignore_index)
        raw = token_divergence(
            student_logits, teacher_logits, positions, divergence, beta, temperature, ignore_index,
            teacher_topk_indices, chunk_size,
        )  # fmt: skip
        soft = raw * (temperature**2)
    else:
        student_part = student_logits
        if teacher_logits.shape[-1] < student_logits.shape[-1]:
            student_part = student_logits[..., : teacher_logits.shape[-1]]
        soft = soft_label_kl(student_part, teacher_logits, temperature=temperature, mask=mask)
    return mix_soft_and_hard(
        soft, student_logits, labels, alpha, valid_mask, ignore_index, class_weights, label_smoothing
    )


def mix_soft_and_hard(
    soft: Tensor,
    student_logits: Tensor,
    labels: Tensor | None,
    alpha: float,
    mask: Tensor | None = None,
    ignore_index: int = -100,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """`distillation_loss`'s mix for a soft term computed elsewhere (e.g. `uld_loss`, which pairs positions its
    own way): alpha * soft + (1 - alpha) * CE on `labels`; soft alone without labels or where all are ignored."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (it weights the soft term), got {alpha}")
    if labels is None:
        return {"loss": soft, "soft": soft}
    valid_mask = as_bool_mask(mask, student_logits.shape[:-1], "mask")
    if tuple(labels.shape) != tuple(student_logits.shape[:-1]):
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected {tuple(student_logits.shape[:-1])}"
        )
    if valid_mask is not None:
        # Padding positions must not count as gold labels either.
        labels = labels.masked_fill(~valid_mask, ignore_index)
    hard = hard_label_ce(
        student_logits,
        labels,
        ignore_index=ignore_index,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
    )
    mixed = alpha * soft + (1.0 - alpha) * hard
    # torch.where instead of `if (labels != ignore_index).any()` avoids a GPU->CPU sync every step.
    has_labels = (labels != ignore_index).any()
    return {"loss": torch.where(has_labels, mixed, soft), "soft": soft, "hard": hard}
