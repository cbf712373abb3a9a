"""Intermediate-layer distillation (TinyBERT / MiniLM / TextBrewer style): hidden-state and attention transfer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import as_bool_mask, masked_mean, to_float32

# Floor for attention probabilities before taking their log. Attention maps arrive as probabilities
# (not logits), so exact zeros are common (causal masking, padding keys); log(0) = -inf would turn
# 0 * log(0) into NaN. 1e-12 is far below any probability that matters yet log(1e-12) ~ -27.6 keeps the
# loss and its gradient bounded.
_ATTN_EPS = 1e-12


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
    return to_float32(projection(hidden))


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
        h_s = to_float32(h_s) if projection is None else _project(h_s, projection)
        h_t = to_float32(h_t.detach())
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
            valid = as_bool_mask(attention_mask, h_t.shape[:-1], "attention_mask")
        if kind == "mse":
            # Mean over hidden dims per token first, then over valid tokens == mean over all valid
            # (token, dim) entries, since every token has the same width.
            per_token = (h_s - h_t).pow(2).mean(dim=-1)
        else:
            # eps guards all-zero vectors (e.g. zeroed padding) against division by zero.
            per_token = 1.0 - F.cosine_similarity(h_s, h_t, dim=-1, eps=1e-8)
        per_pair.append(masked_mean(per_token, valid))
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
        a_s = to_float32(a_s)
        a_t = to_float32(a_t.detach())
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
        valid = as_bool_mask(attention_mask, torch.Size((batch, length)), "attention_mask")
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
            per_pair.append(masked_mean(row_kl, row_mask))
        else:
            pair_mask = (query_valid & key_valid).expand(batch, heads, length, length)
            per_pair.append(masked_mean((a_s - a_t).pow(2), pair_mask))
    return torch.stack(per_pair).mean()
