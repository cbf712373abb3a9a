"""What every loss here shares: float32 maths, checked masks, a masked mean that is 0 (not NaN) when empty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def to_float32(x: Tensor) -> Tensor:
    """Upcast half-precision (or integer) tensors to float32; keep float32/float64 as they are."""
    # float64 is left alone: a caller who asks for double precision should not silently lose it.
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def as_bool_mask(mask: Tensor | None, shape: torch.Size, name: str) -> Tensor | None:
    """Validate a boolean / 0-1 mask against the expected shape and return it as bool."""
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    # Int/float 0-1 masks (HF attention_mask is int64) are accepted: anything non-zero is valid.
    return mask if mask.dtype == torch.bool else mask != 0


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over positions where ``mask`` is True (0, not NaN, if nothing is valid)."""
    if mask is None:
        return values.mean()
    # masked_fill instead of multiplying by the mask: a non-finite value at a padded position
    # (e.g. garbage logits) must not leak into the sum as NaN via 0 * inf.
    total = values.masked_fill(~mask, 0.0).sum()
    # clamp_min(1): an all-padding batch gives 0 / 1 = 0 and keeps the graph, avoiding a host sync
    # that an `if mask.any()` check would need.
    return total / mask.sum().clamp_min(1)


def kl_from_log_probs(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) summed over the last dim, from log-probabilities, with 0 * log 0 := 0."""
    # Where p == 0 exactly (log p = -inf, e.g. a vocabulary entry masked with -inf logits) the term is
    # 0 by definition, but (-inf) - (-inf) = NaN would poison both the value and the gradient; the
    # inner where() zeroes the difference before multiplying so no NaN reaches autograd either.
    p_is_zero = torch.isneginf(log_p)
    diff = torch.where(p_is_zero, torch.zeros_like(log_p), log_p - log_q)
    return (log_p.exp() * diff).sum(dim=-1)


def check_logits_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    """Raise a readable error when student and teacher logits cannot be compared position-wise."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape; if only the vocabulary size differs "
            "(padded embedding matrices), slice both to the shared vocabulary first"
        )


def check_temperature(temperature: float, typical: str | None = None) -> None:
    """Reject non-positive temperatures (a division by zero, or a flipped distribution); `typical` names the usual range."""
    # The one check, for the losses and the configs (DistillConfig, CLMConfig) alike, with one exception type:
    # ValueError, since hfkit.losses sits below hfkit.errors' floor and cannot raise UserInputError (a ValueError
    # subclass); hfkit.parsing turns a ValueError from a config's __post_init__ into its UserInputError.
    if not temperature > 0:
        hint = f"; typical values are {typical}" if typical else ""
        raise ValueError(f"temperature must be > 0, got {temperature}{hint}.")


def label_mask(labels: Tensor | None, logits: Tensor, ignore_index: int) -> Tensor | None:
    """Turn token labels into a validity mask over the logits' leading dims (None if no labels)."""
    if labels is None:
        return None
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected {tuple(logits.shape[:-1])} "
            "(the logits' leading dims; apply the causal shift to both before calling)"
        )
    return labels != ignore_index


def tempered_log_probs(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Checked float32 log_softmax(logits / T) of student and (detached) teacher, in that order."""
    check_logits_pair(student_logits, teacher_logits)
    check_temperature(temperature)
    # Upcast *before* dividing by T: in fp16, 1e4 / 0.5 already overflows to inf.
    log_p_student = F.log_softmax(to_float32(student_logits) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(to_float32(teacher_logits.detach()) / temperature, dim=-1)
    return log_p_student, log_p_teacher
