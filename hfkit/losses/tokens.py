"""Token-level losses for causal LMs (GKD / on-policy distillation): KL, generalized JSD, their top-k forms."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .core import kl_from_log_probs, label_mask, masked_mean, tempered_log_probs


def token_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    temperature: float = 1.0,
    kind: str = "forward",
    ignore_index: int = -100,
) -> Tensor:
    """Per-token KL for LMs: forward KL(p_T || p_S) or reverse KL(p_S || p_T), mean over valid tokens."""
    # logits (B, L, V) (any leading dims), labels (B, L) already aligned with the logits (shifted);
    # positions with labels == ignore_index (prompt, padding) are excluded. Forward KL is mass-covering
    # (classic KD), reverse KL mode-seeking (MiniLLM / on-policy distillation). Like TRL's GKD loss there
    # is NO T^2 factor here (unlike soft_label_kl): distillation_loss applies it to the soft term, once.
    # token_kl(kind="forward") == generalized_jsd(beta=0) and token_kl(kind="reverse") ==
    # generalized_jsd(beta=1) for the same inputs.
    if kind not in ("forward", "reverse"):
        raise ValueError(f"kind must be 'forward' or 'reverse', got {kind!r}")
    log_p_student, log_p_teacher = tempered_log_probs(student_logits, teacher_logits, temperature)
    valid = label_mask(labels, student_logits, ignore_index)
    if kind == "forward":
        per_token = kl_from_log_probs(log_p_teacher, log_p_student)
    else:
        per_token = kl_from_log_probs(log_p_student, log_p_teacher)
    return masked_mean(per_token, valid)


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
) -> Tensor:
    """GKD generalized JSD with TRL's convention; beta=0 -> KL(p_T||p_S), beta=1 -> KL(p_S||p_T)."""
    # Convention (identical to TRL GKDTrainer.generalized_jsd_loss):
    #   m   = beta * p_T + (1 - beta) * p_S            (computed as logsumexp in log-space)
    #   JSD = beta * KL(p_T || m) + (1 - beta) * KL(p_S || m)
    # beta = 0.5 is the ordinary (symmetric) JSD. The formula itself tends to 0 at both ends (m -> p_S
    # or p_T), so, as in TRL, the endpoints are special-cased to the KLs the GKD paper names: beta = 0 is
    # forward KL(p_T || p_S), beta = 1 reverse KL(p_S || p_T). Masking: labels == ignore_index positions
    # are excluded; mean over valid tokens (TRL's "batchmean" with labels). No T^2 factor, as in TRL.
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return token_kl(student_logits, teacher_logits, labels, temperature, "forward", ignore_index)
    if beta == 1.0:
        return token_kl(student_logits, teacher_logits, labels, temperature, "reverse", ignore_index)
    log_p_student, log_p_teacher = tempered_log_probs(student_logits, teacher_logits, temperature)
    valid = label_mask(labels, student_logits, ignore_index)
    # log m = logsumexp(log p_T + log beta, log p_S + log(1 - beta)): mixing in probability space would
    # underflow for the tail of a large vocabulary, log-space keeps every entry finite.
    log_mixture = torch.logsumexp(
        torch.stack([log_p_teacher + math.log(beta), log_p_student + math.log1p(-beta)]), dim=0
    )
    per_token = beta * kl_from_log_probs(log_p_teacher, log_mixture) + (1.0 - beta) * kl_from_log_probs(
        log_p_student, log_mixture
    )
    return masked_mean(per_token, valid)


# --------------------------------------------------------------------------------------------------
# Sparse (top-k) token losses and one entry point for causal-LM distillation
# --------------------------------------------------------------------------------------------------

# Names accepted by token_divergence (and CLMConfig.divergence).
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def _gather_topk(student_logits: Tensor, teacher_values: Tensor, teacher_indices: Tensor) -> Tensor:
    """The student's logits at the teacher's top-k token ids, (..., k), checked against the teacher's shapes."""
    if teacher_values.shape != teacher_indices.shape:
        raise ValueError(
            f"teacher top-k values {tuple(teacher_values.shape)} and indices {tuple(teacher_indices.shape)} "
            "differ in shape; they must come from the same torch.topk call"
        )
    if teacher_indices.is_floating_point() or teacher_indices.dtype == torch.bool:
        raise ValueError(
            f"teacher top-k indices must be integer token ids, got dtype {teacher_indices.dtype}"
        )
    if tuple(teacher_values.shape[:-1]) != tuple(student_logits.shape[:-1]):
        raise ValueError(
            f"teacher top-k has leading shape {tuple(teacher_values.shape[:-1])} but the student's logits "
            f"{tuple(student_logits.shape[:-1])}: both must cover the same (batch, position) grid"
        )
    k, vocab = teacher_values.shape[-1], student_logits.shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(f"teacher top-k has k={k} entries per token; need 1 <= k <= student vocab ({vocab})")
    # Gather before upcasting: only k of the V entries need float32, and autograd then routes the gradient
    # to exactly those logits (the student's mass outside the teacher's support is not trained directly).
    return torch.gather(student_logits, -1, teacher_indices.long())


def topk_token_kl(
    student_logits: Tensor,
    teacher_topk_values: Tensor,
    teacher_topk_indices: Tensor,
    labels: Tensor | None = None,
    temperature: float = 1.0,
    kind: str = "forward",
    ignore_index: int = -100,
) -> Tensor:
    """token_kl over the teacher's top-k tokens: both distributions renormalised on that support."""
    # student_logits (..., V) full logits; teacher_topk_values / _indices (..., k) = torch.topk(teacher
    # logits, k) (raw logits, before any temperature: the top-k set does not change with T). Both sides are
    # renormalised over the k teacher tokens (log_softmax over k), so for k = V this is exactly token_kl;
    # for k < V the teacher's tail mass is dropped rather than spread, as in sparse-logit KD caches.
    # Masking, float32 log-space maths and the missing T^2 factor are token_kl's.
    gathered = _gather_topk(student_logits, teacher_topk_values, teacher_topk_indices)
    return token_kl(gathered, teacher_topk_values, labels, temperature, kind, ignore_index)


def topk_generalized_jsd(
    student_logits: Tensor,
    teacher_topk_values: Tensor,
    teacher_topk_indices: Tensor,
    labels: Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
) -> Tensor:
    """generalized_jsd over the teacher's top-k tokens, both distributions renormalised on that support."""
    gathered = _gather_topk(student_logits, teacher_topk_values, teacher_topk_indices)
    return generalized_jsd(gathered, teacher_topk_values, labels, beta, temperature, ignore_index)


def token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    teacher_topk_indices: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-token 'forward_kl' | 'reverse_kl' | 'jsd' (beta) of teacher vs student, mean over valid tokens."""
    # teacher_logits: the full (..., V) logits, or the teacher's top-k logits (..., k) when
    # teacher_topk_indices is given (then the top-k variants above are used). labels must already be
    # aligned with the logits (causal shift applied by the caller). No T^2 factor (see token_kl).
    # chunk_size: the same value computed over chunk_size positions at a time (chunked_token_divergence).
    if chunk_size is not None:
        return chunked_token_divergence(
            student_logits, teacher_logits, labels, divergence, beta, temperature, ignore_index,
            teacher_topk_indices, chunk_size,
        )  # fmt: skip
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if teacher_topk_indices is None:
        if divergence == "jsd":
            return generalized_jsd(student_logits, teacher_logits, labels, beta, temperature, ignore_index)
        kind = "forward" if divergence == "forward_kl" else "reverse"
        return token_kl(student_logits, teacher_logits, labels, temperature, kind, ignore_index)
    if divergence == "jsd":
        return topk_generalized_jsd(
            student_logits, teacher_logits, teacher_topk_indices, labels, beta, temperature, ignore_index
        )
    kind = "forward" if divergence == "forward_kl" else "reverse"
    return topk_token_kl(
        student_logits, teacher_logits, teacher_topk_indices, labels, temperature, kind, ignore_index
    )


def chunked_token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    teacher_topk_indices: Tensor | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """token_divergence computed over `chunk_size` positions at a time: the same value, bounded memory.

    The float32 log-softmaxes, mixtures and products of a divergence are each as large as the logits (for a
    150k vocabulary, 0.6 MB per position), and autograd keeps them all for the backward pass. Here each chunk is
    recomputed in the backward pass (activation checkpointing) instead, so the loss itself holds one chunk's
    intermediates at a time, on top of the logits and their gradient (which the model's forward already made).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    vocab = student_logits.shape[-1]
    student = student_logits.reshape(-1, vocab)
    teacher = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    indices = (
        None if teacher_topk_indices is None else teacher_topk_indices.reshape(-1, teacher_logits.shape[-1])
    )
    if labels is None:
        labels = torch.zeros(student.shape[0], dtype=torch.long, device=student.device)
    flat_labels = labels.reshape(-1)
    if flat_labels.shape[0] != student.shape[0]:
        raise ValueError(
            f"labels cover {flat_labels.shape[0]} positions but the logits {student.shape[0]}: shapes "
            f"{tuple(labels.shape)} vs {tuple(student_logits.shape)}"
        )
    counts = (flat_labels != ignore_index).sum()
    total = student.new_zeros((), dtype=torch.float32)

    def chunk_sum(s: Tensor, t: Tensor, lab: Tensor, idx: Tensor | None) -> Tensor:
        n = (lab != ignore_index).sum()
        mean = token_divergence(s, t, lab, divergence, beta, temperature, ignore_index, idx)
        return mean * n

    for start in range(0, student.shape[0], chunk_size):
        end = start + chunk_size
        lab = flat_labels[start:end]
        if not (lab != ignore_index).any():
            continue
        idx = None if indices is None else indices[start:end]
        part = student[start:end]
        if part.requires_grad:
            total = total + checkpoint(chunk_sum, part, teacher[start:end], lab, idx, use_reentrant=False)
        else:
            total = total + chunk_sum(part, teacher[start:end], lab, idx)
    return total / counts.clamp(min=1)


# --------------------------------------------------------------------------------------------------
# Cross-tokenizer distillation: Universal Logit Distillation
# --------------------------------------------------------------------------------------------------


def uld_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    student_mask: Tensor,
    teacher_mask: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> Tensor:
    """Universal Logit Distillation (Boizard et al. 2024): teacher and student of different vocabularies.

    Each model reads the text with its own tokenizer. The i-th learned position of a student row is paired
    with the i-th of the same teacher row (the first min(n_student, n_teacher) of each row: the paper's
    alignment), and each pair costs the Wasserstein-1 distance between the two next-token distributions under
    a uniform cost, which for distributions over different supports has the closed form used here: the L1
    distance between the probability vectors sorted in decreasing order (the smaller vocabulary padded with
    zeros). No token alignment is needed. Mean over pairs; no T^2 factor (like the other token divergences).
    student_logits (B, Ls, Vs) and teacher_logits (B, Lt, Vt) already shifted; masks (B, Ls) / (B, Lt) True
    on the learned positions.

    `top_k` (None: every probability) compares only each side's k largest probabilities (`topk`, not a sort
    of the whole vocabulary: a 152k-entry sort per position is what makes exact ULD slow on a CPU) and then
    the two tails by their masses, |tail_s - tail_t|. That tail term is exact when one side has no tail (k
    covers its vocabulary) and otherwise a lower bound: the exact loss is at most 2 * min(tail_s, tail_t)
    above it.
    """
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise ValueError(
            f"student and teacher batches differ: {student_logits.shape[0]} vs {teacher_logits.shape[0]} rows"
        )
    student_rows, teacher_rows = [], []
    for b in range(student_logits.shape[0]):
        s_pos = student_mask[b].nonzero().squeeze(-1)
        t_pos = teacher_mask[b].nonzero().squeeze(-1)
        n = min(len(s_pos), len(t_pos))
        student_rows.append(student_logits[b, s_pos[:n]])
        teacher_rows.append(teacher_logits[b, t_pos[:n]])
    student_pairs, teacher_pairs = torch.cat(student_rows), torch.cat(teacher_rows)
    if student_pairs.shape[0] == 0:
        return student_logits.sum() * 0.0  # nothing to learn from, but keep the graph
    p_student, tail_student = _sorted_head(student_pairs, temperature, top_k)
    p_teacher, tail_teacher = _sorted_head(teacher_pairs, temperature, top_k)
    width = max(p_student.shape[-1], p_teacher.shape[-1])
    p_student = torch.nn.functional.pad(p_student, (0, width - p_student.shape[-1]))
    p_teacher = torch.nn.functional.pad(p_teacher, (0, width - p_teacher.shape[-1]))
    # The tails' masses are 0 where nothing was left out, so the exact loss gains exactly 0 here.
    distance = (p_student - p_teacher).abs().sum(dim=-1) + (tail_student - tail_teacher).abs()
    return distance.mean()


def _sorted_head(logits: Tensor, temperature: float, top_k: int | None) -> tuple[Tensor, Tensor]:
    """The probabilities of each row in decreasing order (the k largest when top_k < the vocabulary), and the
    mass left out of them per row (zeros when nothing is)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_k is None or top_k >= probs.shape[-1]:
        return probs.sort(dim=-1, descending=True).values, probs.new_zeros(probs.shape[:-1])
    head = probs.topk(top_k, dim=-1, sorted=True).values
    return head, (1.0 - head.sum(dim=-1)).clamp(min=0.0)
