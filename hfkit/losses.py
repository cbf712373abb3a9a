"""Knowledge-distillation losses as pure tensor functions (no Trainer, no model calls).

Every function here follows the same three rules, so they can be dropped into any ``compute_loss``:

* **float32 maths.** Half-precision inputs (bf16/fp16) are upcast before any softmax/log/square, and
  probabilities are handled in log-space (``log_softmax``, ``logsumexp``, ``xlogy``). Under mixed
  precision the logits of a large vocabulary easily reach magnitudes where ``exp`` overflows fp16 and
  where bf16's 8-bit mantissa turns ``p * log p`` into garbage, which is where NaN/inf losses come from.
  float64 inputs are kept in float64 (more precise, never less). The returned scalar is therefore
  float32 for half/float32 inputs.
* **Masking.** Every loss takes a padding mask (``mask`` / ``attention_mask`` / ``labels ==
  ignore_index``); masked positions are excluded from both the numerator and the denominator of the
  mean, so padding never dilutes the loss. A batch with no valid position yields ``0`` (still attached
  to the graph) instead of the ``0 / 0 = NaN`` that e.g. ``F.cross_entropy`` would give.
* **The teacher is a constant.** Teacher tensors are ``detach()``-ed so no gradient (and no autograd
  memory) is spent on the teacher even if the caller forgot ``torch.no_grad()``.

Index conventions (the usual source of off-by-one bugs):

* ``hidden_states`` tuples (HF ``output_hidden_states=True``) have ``num_layers + 1`` entries:
  index 0 is the embedding output, index ``i`` is the output of layer ``i`` (1-based layers).
* ``attentions`` tuples (HF ``output_attentions=True``) have ``num_layers`` entries: index ``i`` is
  layer ``i + 1`` (0-based, no embedding entry).
* Layer maps are lists of ``(teacher_index, student_index)`` pairs -- teacher first, like the
  ``(teacher, student)`` argument order of every loss here. :func:`uniform_layer_map` produces a map in
  hidden-state indexing; :func:`hidden_to_attention_map` converts it to attention indexing.

References: Hinton et al. 2015 (soft targets, T^2 scaling); DistilBERT (Sanh et al. 2019); TinyBERT
(Jiao et al. 2020: hidden-state MSE through a learned W_h, attention MSE); MiniLM (Wang et al. 2020:
attention KL); TextBrewer losses (att_kl, hidden_mse, cos); GKD (Agarwal et al. 2024) and TRL's
``GKDTrainer.generalized_jsd_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DIVERGENCES",
    "attention_loss",
    "distillation_loss",
    "generalized_jsd",
    "hard_label_ce",
    "hidden_state_loss",
    "hidden_to_attention_map",
    "make_projections",
    "soft_label_kl",
    "token_divergence",
    "token_kl",
    "topk_generalized_jsd",
    "topk_token_kl",
    "uniform_layer_map",
]

# Floor for attention probabilities before taking their log. Attention maps arrive as probabilities
# (not logits), so exact zeros are common (causal masking, padding keys); log(0) = -inf would turn
# 0 * log(0) into NaN. 1e-12 is far below any probability that matters yet log(1e-12) ~ -27.6 keeps the
# loss and its gradient bounded.
_ATTN_EPS = 1e-12


# --------------------------------------------------------------------------------------------------
# Internal helpers
# --------------------------------------------------------------------------------------------------


def _f32(x: Tensor) -> Tensor:
    """Upcast half-precision (or integer) tensors to float32; keep float32/float64 as they are."""
    # float64 is left alone: a caller who asks for double precision should not silently lose it.
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _as_bool_mask(mask: Tensor | None, shape: torch.Size, name: str) -> Tensor | None:
    """Validate a boolean / 0-1 mask against the expected shape and return it as bool."""
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    # Int/float 0-1 masks (HF attention_mask is int64) are accepted: anything non-zero is valid.
    return mask if mask.dtype == torch.bool else mask != 0


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over positions where ``mask`` is True (0, not NaN, if nothing is valid)."""
    if mask is None:
        return values.mean()
    # masked_fill instead of multiplying by the mask: a non-finite value at a padded position
    # (e.g. garbage logits) must not leak into the sum as NaN via 0 * inf.
    total = values.masked_fill(~mask, 0.0).sum()
    # clamp_min(1): an all-padding batch gives 0 / 1 = 0 and keeps the graph, avoiding a host sync
    # that an `if mask.any()` check would need.
    return total / mask.sum().clamp_min(1)


def _kl_from_log_probs(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) summed over the last dim, from log-probabilities, with 0 * log 0 := 0."""
    # Where p == 0 exactly (log p = -inf, e.g. a vocabulary entry masked with -inf logits) the term is
    # 0 by definition, but (-inf) - (-inf) = NaN would poison both the value and the gradient; the
    # inner where() zeroes the difference before multiplying so no NaN reaches autograd either.
    p_is_zero = torch.isneginf(log_p)
    diff = torch.where(p_is_zero, torch.zeros_like(log_p), log_p - log_q)
    return (log_p.exp() * diff).sum(dim=-1)


def _check_logits_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    """Raise a readable error when student and teacher logits cannot be compared position-wise."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape; if only the vocabulary size differs "
            "(padded embedding matrices), slice both to the shared vocabulary first"
        )


def _check_temperature(temperature: float) -> None:
    """Reject non-positive temperatures, which would divide by zero or flip the distribution."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _label_mask(labels: Tensor | None, logits: Tensor, ignore_index: int) -> Tensor | None:
    """Turn token labels into a validity mask over the logits' leading dims (None if no labels)."""
    if labels is None:
        return None
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected {tuple(logits.shape[:-1])} "
            "(the logits' leading dims; apply the causal shift to both before calling)"
        )
    return labels != ignore_index


# --------------------------------------------------------------------------------------------------
# Logit distillation (classification or token level)
# --------------------------------------------------------------------------------------------------


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
    _check_logits_pair(student_logits, teacher_logits)
    _check_temperature(temperature)
    valid = _as_bool_mask(mask, student_logits.shape[:-1], "mask")
    # Upcast *before* dividing by T: in fp16, 1e4 / 0.5 already overflows to inf.
    log_p_student = F.log_softmax(_f32(student_logits) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(_f32(teacher_logits.detach()) / temperature, dim=-1)
    per_position = _kl_from_log_probs(log_p_teacher, log_p_student)
    # T^2 keeps the gradient magnitude of the soft term roughly independent of T (Hinton et al. 2015,
    # sec. 2.1: gradients of the softened KL scale as 1/T^2), so alpha means the same thing at any T.
    return _masked_mean(per_position, valid) * (temperature**2)


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
    logits = _f32(student_logits).reshape(-1, num_classes)
    flat_labels = labels.reshape(-1).long()
    weight = None if class_weights is None else _f32(class_weights).to(logits.device)
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
) -> dict[str, Tensor]:
    """DistilBERT-style mix: loss = alpha * soft (T^2-scaled KL) + (1 - alpha) * hard (CE on labels)."""
    # `alpha` weights the SOFT (teacher) term; alpha=1 is pure distillation, alpha=0 pure fine-tuning.
    # labels=None (e.g. augmented rows without gold labels): loss = soft alone (not alpha * soft), and
    # the "hard" key is absent. Rows whose label is `ignore_index` enter the soft mean but not the hard
    # mean; if *every* row is unlabelled the loss falls back to soft alone, so a fully unlabelled batch
    # gives the same loss whether its labels are None or all ignore_index. `mask` (optional, leading
    # dims) removes padding positions from both terms.
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (it weights the soft term), got {alpha}")
    soft = soft_label_kl(student_logits, teacher_logits, temperature=temperature, mask=mask)
    if labels is None:
        return {"loss": soft, "soft": soft}
    if tuple(labels.shape) != tuple(student_logits.shape[:-1]):
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}, expected {tuple(student_logits.shape[:-1])}"
        )
    valid_mask = _as_bool_mask(mask, student_logits.shape[:-1], "mask")
    if valid_mask is not None:
        # Padding positions must not count as gold labels either.
        labels = labels.masked_fill(~valid_mask, ignore_index)
    hard = hard_label_ce(student_logits, labels, ignore_index=ignore_index)
    mixed = alpha * soft + (1.0 - alpha) * hard
    # torch.where instead of `if (labels != ignore_index).any()` avoids a GPU->CPU sync every step.
    has_labels = (labels != ignore_index).any()
    return {"loss": torch.where(has_labels, mixed, soft), "soft": soft, "hard": hard}


# --------------------------------------------------------------------------------------------------
# Intermediate-layer distillation (TinyBERT / MiniLM / TextBrewer style)
# --------------------------------------------------------------------------------------------------


def uniform_layer_map(num_teacher_layers: int, num_student_layers: int) -> list[tuple[int, int]]:
    """(teacher, student) pairs in hidden-state indexing: student layer j -> teacher round(j*T/S), plus (0, 0)."""
    # Hidden-state indexing: 0 = embeddings, i = output of layer i. Rounding is half-up (not Python's
    # banker's rounding), done in integers so e.g. T=5, S=2 maps student 1 -> teacher 3 reproducibly.
    # The last student layer always maps to the last teacher layer (j = S gives T).
    if num_teacher_layers < 1 or num_student_layers < 1:
        raise ValueError(
            f"layer counts must be >= 1, got teacher={num_teacher_layers}, student={num_student_layers}"
        )
    pairs = [(0, 0)]
    for j in range(1, num_student_layers + 1):
        teacher = (2 * j * num_teacher_layers + num_student_layers) // (2 * num_student_layers)
        pairs.append((teacher, j))
    return pairs


def hidden_to_attention_map(layer_map: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Convert a hidden-state layer map to attention indexing: drop (0, 0), subtract 1 from both sides."""
    # Attention tuples have no embeddings entry, so hidden index i (output of layer i) is attention
    # index i - 1. A pair with the embeddings on only one side has no attention counterpart; subtracting
    # 1 would give -1, which Python would silently read as the *last* layer, so it is an error instead.
    converted = []
    for teacher, student in layer_map:
        if teacher == 0 and student == 0:
            continue
        if teacher < 1 or student < 1:
            raise ValueError(
                f"pair ({teacher}, {student}) mixes the embedding output (index 0) with a layer or uses "
                "a negative index; it has no attention-map counterpart"
            )
        converted.append((teacher - 1, student - 1))
    return converted


def make_projections(student_width: int, teacher_width: int, num_pairs: int) -> nn.ModuleList:
    """TinyBERT's learned W_h: one Linear(student_width -> teacher_width) per layer pair (empty if equal)."""
    # Equal widths return an EMPTY ModuleList: no parameters are needed, and hidden_state_loss treats
    # an empty sequence exactly like projections=None (compare hidden states directly).
    # The returned modules hold trainable parameters: attach them to the student (e.g. as a submodule)
    # or add them to the optimizer, otherwise W_h stays at its random initialisation.
    if student_width < 1 or teacher_width < 1 or num_pairs < 0:
        raise ValueError(
            f"invalid sizes: student_width={student_width}, teacher_width={teacher_width}, "
            f"num_pairs={num_pairs}"
        )
    if student_width == teacher_width:
        return nn.ModuleList()
    return nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(num_pairs))


def _project(hidden: Tensor, projection: nn.Module) -> Tensor:
    """Apply a projection in its own parameter dtype and return the result in float32 (or float64)."""
    # A float32 Linear cannot take bf16 input (dtype mismatch) and a bf16 Linear cannot take float32,
    # so feed it its own dtype; the result is upcast again for the loss maths.
    param = next(projection.parameters(), None)
    if param is not None and param.is_floating_point():
        hidden = hidden.to(param.dtype)
    return _f32(projection(hidden))


def _check_layer_map(layer_map: Sequence[tuple[int, int]], what: str) -> None:
    """Reject an empty layer map, which would otherwise produce a silent 0 / 0."""
    if len(layer_map) == 0:
        raise ValueError(f"layer_map is empty: nothing to compare for {what}")


def hidden_state_loss(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    layer_map: Sequence[tuple[int, int]],
    attention_mask: Tensor | None = None,
    projections: Sequence[nn.Module | None] | None = None,
    kind: str = "mse",
) -> Tensor:
    """TinyBERT hidden-state loss (MSE or 1 - cosine) over mapped layers, padding tokens excluded."""
    # student_hidden / teacher_hidden: HF `hidden_states` tuples of (B, L, D) tensors, index 0 =
    # embeddings, i = output of layer i. layer_map: (teacher_index, student_index) pairs into them.
    # projections: one module (or None) per pair, applied to the STUDENT side (student -> teacher width);
    # None or an empty sequence means "no projection". attention_mask: (B, L), 1/True = real token.
    # kind="mse": mean squared error over valid tokens and hidden dims (TextBrewer hidden_mse);
    # kind="cosine": mean over valid tokens of 1 - cos(h_s, h_t) (TextBrewer cos, DistilBERT L_cos).
    # Result: mean over pairs, so the scale does not grow with the number of mapped layers.
    if kind not in ("mse", "cosine"):
        raise ValueError(f"kind must be 'mse' or 'cosine', got {kind!r}")
    _check_layer_map(layer_map, "hidden_state_loss")
    if projections is not None and len(projections) == 0:
        projections = None
    if projections is not None and len(projections) != len(layer_map):
        raise ValueError(
            f"got {len(projections)} projections for {len(layer_map)} layer pairs: pass one per pair"
        )
    valid = None
    per_pair = []
    for k, (t_idx, s_idx) in enumerate(layer_map):
        h_s = student_hidden[s_idx]
        h_t = teacher_hidden[t_idx]
        if h_s is None or h_t is None:
            raise ValueError(
                f"hidden state missing for pair ({t_idx}, {s_idx}): run the models with output_hidden_states=True"
            )
        projection = None if projections is None else projections[k]
        h_s = _f32(h_s) if projection is None else _project(h_s, projection)
        h_t = _f32(h_t.detach())
        if h_s.shape[-1] != h_t.shape[-1]:
            if projection is None:
                raise ValueError(
                    f"student width {h_s.shape[-1]} != teacher width {h_t.shape[-1]}: "
                    "pass projections (see make_projections)"
                )
            raise ValueError(
                f"projection {k} outputs width {h_s.shape[-1]} but teacher width is {h_t.shape[-1]}"
            )
        if h_s.shape != h_t.shape:
            raise ValueError(
                f"pair ({t_idx}, {s_idx}): student hidden {tuple(h_s.shape)} vs teacher {tuple(h_t.shape)}; "
                "student and teacher must see the same (B, L) tokens"
            )
        if valid is None:
            valid = _as_bool_mask(attention_mask, h_t.shape[:-1], "attention_mask")
        if kind == "mse":
            # Mean over hidden dims per token first, then over valid tokens == mean over all valid
            # (token, dim) entries, since every token has the same width.
            per_token = (h_s - h_t).pow(2).mean(dim=-1)
        else:
            # eps guards all-zero vectors (e.g. zeroed padding) against division by zero.
            per_token = 1.0 - F.cosine_similarity(h_s, h_t, dim=-1, eps=1e-8)
        per_pair.append(_masked_mean(per_token, valid))
    return torch.stack(per_pair).mean()


def _mean_heads(attn: Tensor) -> Tensor:
    """Average a (B, H, L, L) attention map over heads, keeping a singleton head dim."""
    # A mean of row-stochastic matrices is still row-stochastic, so KL stays well defined.
    return attn.mean(dim=1, keepdim=True)


def attention_loss(
    student_attentions: Sequence[Tensor],
    teacher_attentions: Sequence[Tensor],
    layer_map: Sequence[tuple[int, int]],
    attention_mask: Tensor | None = None,
    kind: str = "kl",
) -> Tensor:
    """MiniLM attention KL (or TinyBERT attention MSE) between mapped layers' attention probabilities."""
    # student/teacher_attentions: HF `attentions` tuples (output_attentions=True; needs
    # attn_implementation="eager", SDPA/flash return None) of (B, H, L, L) probability maps, query rows x
    # key columns. Index i = layer i + 1: there is NO embeddings entry, so layer_map here holds 0-based
    # (teacher_layer, student_layer) pairs; build it with hidden_to_attention_map(uniform_layer_map(...)).
    # Head counts that differ: both maps are averaged over heads first (one "mean head" each), since
    # there is no canonical head-to-head pairing. attention_mask: (B, L), 1/True = real token.
    # kind="kl": KL(teacher_row || student_row) per query row, averaged over heads and valid query rows;
    #   padding query rows are excluded, padding key columns contribute 0.
    # kind="mse": squared error averaged over heads and valid (query, key) pairs. (TinyBERT applies MSE
    #   to pre-softmax scores; HF only exposes probabilities, so this is MSE on probabilities.)
    # Result: mean over pairs.
    if kind not in ("kl", "mse"):
        raise ValueError(f"kind must be 'kl' or 'mse', got {kind!r}")
    _check_layer_map(layer_map, "attention_loss")
    per_pair = []
    for t_idx, s_idx in layer_map:
        a_s = student_attentions[s_idx]
        a_t = teacher_attentions[t_idx]
        if a_s is None or a_t is None:
            raise ValueError(
                f"attention map missing for pair ({t_idx}, {s_idx}): load the models with "
                'attn_implementation="eager" and call them with output_attentions=True'
            )
        a_s = _f32(a_s)
        a_t = _f32(a_t.detach())
        if a_s.dim() != 4 or a_t.dim() != 4:
            raise ValueError(
                f"attention maps must be (B, H, L, L), got {tuple(a_s.shape)} and {tuple(a_t.shape)}"
            )
        if a_s.shape[1] != a_t.shape[1]:
            a_s, a_t = _mean_heads(a_s), _mean_heads(a_t)
        if a_s.shape != a_t.shape:
            raise ValueError(
                f"pair ({t_idx}, {s_idx}): student attention {tuple(a_s.shape)} vs teacher "
                f"{tuple(a_t.shape)}; batch and sequence length must match"
            )
        batch, heads, length, _ = a_t.shape
        valid = _as_bool_mask(attention_mask, torch.Size((batch, length)), "attention_mask")
        if valid is None:
            valid = torch.ones(batch, length, dtype=torch.bool, device=a_t.device)
        query_valid = valid[:, None, :, None]  # (B, 1, L, 1)
        key_valid = valid[:, None, None, :]  # (B, 1, 1, L)
        if kind == "kl":
            # xlogy(0, .) = 0 handles teacher zeros; clamping the student avoids log(0) = -inf where the
            # teacher has mass but the student has none (bounded, finite loss instead of inf).
            terms = torch.xlogy(a_t, a_t) - torch.xlogy(a_t, a_s.clamp_min(_ATTN_EPS))
            # Padding keys contribute 0 (they carry ~0 probability under HF masking anyway; zeroing them
            # makes the result independent of whatever is there).
            row_kl = terms.masked_fill(~key_valid, 0.0).sum(dim=-1)  # (B, H, L)
            row_mask = query_valid.squeeze(-1).expand(batch, heads, length)
            per_pair.append(_masked_mean(row_kl, row_mask))
        else:
            pair_mask = (query_valid & key_valid).expand(batch, heads, length, length)
            per_pair.append(_masked_mean((a_s - a_t).pow(2), pair_mask))
    return torch.stack(per_pair).mean()


# --------------------------------------------------------------------------------------------------
# Token-level losses for causal LMs (GKD / on-policy distillation)
# --------------------------------------------------------------------------------------------------


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
    # is NO T^2 factor here (unlike soft_label_kl); multiply by temperature**2 yourself if wanted.
    # token_kl(kind="forward") == generalized_jsd(beta=0) and token_kl(kind="reverse") ==
    # generalized_jsd(beta=1) for the same inputs.
    if kind not in ("forward", "reverse"):
        raise ValueError(f"kind must be 'forward' or 'reverse', got {kind!r}")
    _check_logits_pair(student_logits, teacher_logits)
    _check_temperature(temperature)
    valid = _label_mask(labels, student_logits, ignore_index)
    log_p_student = F.log_softmax(_f32(student_logits) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(_f32(teacher_logits.detach()) / temperature, dim=-1)
    if kind == "forward":
        per_token = _kl_from_log_probs(log_p_teacher, log_p_student)
    else:
        per_token = _kl_from_log_probs(log_p_student, log_p_teacher)
    return _masked_mean(per_token, valid)


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
    _check_logits_pair(student_logits, teacher_logits)
    _check_temperature(temperature)
    valid = _label_mask(labels, student_logits, ignore_index)
    log_p_student = F.log_softmax(_f32(student_logits) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(_f32(teacher_logits.detach()) / temperature, dim=-1)
    # log m = logsumexp(log p_T + log beta, log p_S + log(1 - beta)): mixing in probability space would
    # underflow for the tail of a large vocabulary, log-space keeps every entry finite.
    log_mixture = torch.logsumexp(
        torch.stack([log_p_teacher + math.log(beta), log_p_student + math.log1p(-beta)]), dim=0
    )
    per_token = beta * _kl_from_log_probs(log_p_teacher, log_mixture) + (1.0 - beta) * _kl_from_log_probs(
        log_p_student, log_mixture
    )
    return _masked_mean(per_token, valid)


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
) -> Tensor:
    """Per-token 'forward_kl' | 'reverse_kl' | 'jsd' (beta) of teacher vs student, mean over valid tokens."""
    # teacher_logits: the full (..., V) logits, or the teacher's top-k logits (..., k) when
    # teacher_topk_indices is given (then the top-k variants above are used). labels must already be
    # aligned with the logits (causal shift applied by the caller). No T^2 factor (see token_kl).
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
