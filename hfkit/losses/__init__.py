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

One T^2 convention (Hinton et al. 2015, sec. 2.1: the gradients of a KL between distributions softened by T
scale as 1/T^2, so multiplying the soft term by T^2 keeps its weight against the hard term, and thus the
meaning of ``alpha``, the same at any temperature):

* the *soft term* a trainer mixes is always T^2-scaled, applied once by the function that returns it:
  ``soft_label_kl`` and ``soft_target_kl`` (classifier logits), and the ``"soft"`` of ``distillation_loss``,
  the one mix ``alpha * soft + (1 - alpha) * hard`` that every distilling trainer calls (DistillTrainer,
  IncrementalTrainer, and CLMTrainer for tokens);
* the token *divergences* (``token_kl``, ``generalized_jsd``, ``token_divergence`` and their top-k forms)
  are plain divergences, as in TRL's GKD loss, with no T^2: ``distillation_loss`` scales them by T^2 for
  the token-level mix exactly as it does the classifier KL, so both mixes are the same formula.

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

from .core import check_temperature
from .layers import (
    attention_loss,
    hidden_state_loss,
    hidden_to_attention_map,
    make_projections,
    uniform_layer_map,
)
from .logits import (
    TEACHER_COMBINATIONS,
    combine_teachers,
    distillation_loss,
    hard_label_ce,
    mix_soft_and_hard,
    soft_label_kl,
    soft_target_kl,
    teacher_weights,
)
from .tokens import (
    DIVERGENCES,
    chunked_token_divergence,
    generalized_jsd,
    token_divergence,
    token_kl,
    topk_generalized_jsd,
    topk_token_kl,
    uld_loss,
)

__all__ = [
    "DIVERGENCES",
    "TEACHER_COMBINATIONS",
    "attention_loss",
    "check_temperature",
    "chunked_token_divergence",
    "combine_teachers",
    "distillation_loss",
    "generalized_jsd",
    "hard_label_ce",
    "hidden_state_loss",
    "hidden_to_attention_map",
    "make_projections",
    "mix_soft_and_hard",
    "soft_label_kl",
    "soft_target_kl",
    "teacher_weights",
    "token_divergence",
    "token_kl",
    "topk_generalized_jsd",
    "topk_token_kl",
    "uld_loss",
    "uniform_layer_map",
]
