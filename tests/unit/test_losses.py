"""Unit tests for hfkit.losses against hand-computed values (each written out as a number or formula)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfkit.losses import (
    attention_loss,
    distillation_loss,
    generalized_jsd,
    hard_label_ce,
    hidden_state_loss,
    hidden_to_attention_map,
    make_projections,
    soft_label_kl,
    token_kl,
    uniform_layer_map,
)

LN = math.log
# KL([0.8, 0.2] || [0.5, 0.5]) by hand.
KL_82_55 = 0.8 * LN(1.6) + 0.2 * LN(0.4)
# KL([0.5, 0.5] || [0.8, 0.2]) by hand (the "reverse" direction of the same pair).
KL_55_82 = 0.5 * LN(0.5 / 0.8) + 0.5 * LN(0.5 / 0.2)


def logits_of(*probs: float) -> list[float]:
    """Logits whose softmax is exactly `probs` (log-probabilities)."""
    return [math.log(p) for p in probs]


def t(data, **kw) -> torch.Tensor:
    """Float32 tensor shortcut."""
    return torch.tensor(data, dtype=torch.float32, **kw)


def approx(x: torch.Tensor, expected: float, tol: float = 1e-5) -> bool:
    """Scalar comparison with absolute + relative tolerance."""
    return math.isclose(x.item(), expected, rel_tol=tol, abs_tol=tol)


# --------------------------------------------------------------------------------------------------
# soft_label_kl
# --------------------------------------------------------------------------------------------------


def test_soft_kl_identical_logits_is_zero():
    x = torch.randn(4, 7)
    assert approx(soft_label_kl(x, x.clone(), temperature=3.0), 0.0)


def test_soft_kl_two_class_hand_value():
    student = t([logits_of(0.5, 0.5)])
    teacher = t([logits_of(0.8, 0.2)])
    assert approx(soft_label_kl(student, teacher), KL_82_55)
    # Direction matters: KL(teacher || student), not the reverse.
    assert not approx(soft_label_kl(student, teacher), KL_55_82)


def test_soft_kl_batchmean_over_rows():
    # Row 0 identical (KL 0), row 1 the hand example: batchmean = KL / 2.
    student = t([[1.0, 2.0], logits_of(0.5, 0.5)])
    teacher = t([[1.0, 2.0], logits_of(0.8, 0.2)])
    assert approx(soft_label_kl(student, teacher), KL_82_55 / 2)


def test_soft_kl_temperature_squared_scaling():
    torch.manual_seed(0)
    s, te, T = torch.randn(3, 5), torch.randn(3, 5), 4.0
    expected = T**2 * soft_label_kl(s / T, te / T, temperature=1.0)
    assert approx(soft_label_kl(s, te, temperature=T), expected.item())
    # Hand value at T=2: logits 2*log(p) soften to p; the loss is 4 * KL_82_55.
    student = t([logits_of(0.5, 0.5)]) * 2
    teacher = t([logits_of(0.8, 0.2)]) * 2
    assert approx(soft_label_kl(student, teacher, temperature=2.0), 4 * KL_82_55)


def test_soft_kl_mask_ignores_garbage_rows():
    student = t([logits_of(0.5, 0.5)])
    teacher = t([logits_of(0.8, 0.2)])
    garbage_s = torch.cat([student, t([[50.0, -50.0], [3.0, 1e4]])])
    garbage_t = torch.cat([teacher, t([[-50.0, 50.0], [-1e4, 7.0]])])
    assert approx(soft_label_kl(garbage_s, garbage_t, mask=torch.tensor([1, 0, 0])), KL_82_55)
    # Without the mask the garbage rows clearly change the value (the test can fail).
    assert not approx(soft_label_kl(garbage_s, garbage_t), KL_82_55)


def test_soft_kl_token_level_mask():
    # (B=2, L=2, C=2): only position (0, 0) is valid.
    s = torch.zeros(2, 2, 2)
    te = torch.randn(2, 2, 2) * 10
    s[0, 0] = t(logits_of(0.5, 0.5))
    te[0, 0] = t(logits_of(0.8, 0.2))
    mask = torch.tensor([[True, False], [False, False]])
    assert approx(soft_label_kl(s, te, mask=mask), KL_82_55)
    # All-masked batch: 0, not NaN.
    assert soft_label_kl(s, te, mask=torch.zeros(2, 2)).item() == 0.0
    with pytest.raises(ValueError, match="mask has shape"):
        soft_label_kl(s, te, mask=torch.ones(2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_soft_kl_half_precision_large_logits_finite_float32(dtype):
    student = torch.tensor([[-1e4, 1e4]], dtype=dtype)
    teacher = torch.tensor([[1e4, -1e4]], dtype=dtype)
    out = soft_label_kl(student, teacher, temperature=0.5)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    # Teacher is one-hot on class 0, so KL = -log p_s(0) = (s1 - s0)/T = 2v/T, times T^2 -> 2v*T.
    v = torch.tensor(1e4, dtype=dtype).item()
    assert approx(out, 2 * v * 0.5, tol=1e-4)


def test_soft_kl_gradient_to_student_not_teacher():
    s = torch.randn(3, 4, requires_grad=True)
    te = torch.randn(3, 4, requires_grad=True)
    soft_label_kl(s, te, temperature=2.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert te.grad is None


def test_soft_kl_neg_inf_teacher_logit_is_not_nan():
    # A vocabulary entry masked with -inf in the teacher contributes 0, not NaN (0 * log 0 := 0).
    s = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    te = torch.tensor([[LN(0.8), LN(0.2), -math.inf]])
    out = soft_label_kl(s, te)
    assert approx(out, 0.8 * LN(0.8 * 3) + 0.2 * LN(0.2 * 3))
    out.backward()
    assert torch.isfinite(s.grad).all()


# --------------------------------------------------------------------------------------------------
# hard_label_ce
# --------------------------------------------------------------------------------------------------


def test_hard_ce_hand_value_and_ignore_index():
    logits = t([logits_of(0.7, 0.2, 0.1), [5.0, -3.0, 9.0]])
    assert approx(hard_label_ce(logits, torch.tensor([0, -100])), -LN(0.7))
    assert approx(hard_label_ce(logits[:1], torch.tensor([2])), -LN(0.1))
    assert approx(hard_label_ce(logits, torch.tensor([0, 7]), ignore_index=7), -LN(0.7))


def test_hard_ce_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, requires_grad=True)
    out = hard_label_ce(logits, torch.tensor([-100, -100]))
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(logits.grad).all()


def test_hard_ce_class_weights_hand_value():
    logits = t([logits_of(0.7, 0.2, 0.1), logits_of(0.25, 0.25, 0.5)])
    labels = torch.tensor([0, 1])
    weights = t([1.0, 3.0, 0.5])
    expected = (1 * -LN(0.7) + 3 * -LN(0.25)) / (1 + 3)
    assert approx(hard_label_ce(logits, labels, class_weights=weights), expected)


def test_hard_ce_label_smoothing_hand_value():
    logits = t([logits_of(0.7, 0.2, 0.1)])
    eps = 0.1
    expected = (1 - eps) * -LN(0.7) + eps / 3 * -(LN(0.7) + LN(0.2) + LN(0.1))
    assert approx(hard_label_ce(logits, torch.tensor([0]), label_smoothing=eps), expected)


def test_hard_ce_matches_torch_weighted_smoothed_mean():
    torch.manual_seed(1)
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, -100, 3, 2, 1])
    w = t([1.0, 2.0, 0.5, 4.0])
    ref = F.cross_entropy(logits, labels, weight=w, label_smoothing=0.2)
    assert approx(hard_label_ce(logits, labels, class_weights=w, label_smoothing=0.2), ref.item())


def test_hard_ce_token_level_shapes_and_half_precision():
    logits = torch.full((2, 3, 4), 0.0, dtype=torch.float16)
    logits[..., 0] = 1e4
    labels = torch.tensor([[0, 0, -100], [-100, 0, 0]])
    out = hard_label_ce(logits, labels)
    assert out.dtype == torch.float32 and torch.isfinite(out) and approx(out, 0.0)


# --------------------------------------------------------------------------------------------------
# distillation_loss
# --------------------------------------------------------------------------------------------------


def test_distillation_alpha_mix_hand_value():
    student = t([logits_of(0.5, 0.5)])
    teacher = t([logits_of(0.8, 0.2)])
    out = distillation_loss(student, teacher, labels=torch.tensor([0]), alpha=0.3, temperature=1.0)
    assert approx(out["soft"], KL_82_55)
    assert approx(out["hard"], -LN(0.5))
    assert approx(out["loss"], 0.3 * KL_82_55 + 0.7 * -LN(0.5))


def test_distillation_without_labels_is_soft_only():
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    out = distillation_loss(student, teacher, labels=None, alpha=0.25, temperature=2.0)
    assert set(out) == {"loss", "soft"}
    assert approx(out["loss"], out["soft"].item())
    assert approx(out["soft"], soft_label_kl(student, teacher, temperature=2.0).item())


def test_distillation_unlabelled_rows_only_contribute_to_soft():
    student = t([logits_of(0.5, 0.5), [2.0, -1.0]])
    teacher = t([logits_of(0.8, 0.2), [0.0, 3.0]])
    out = distillation_loss(student, teacher, labels=torch.tensor([0, -100]), alpha=0.5, temperature=1.0)
    soft_all = soft_label_kl(student, teacher).item()
    # hard comes from row 0 only: -ln 0.5; soft averages both rows.
    assert approx(out["hard"], -LN(0.5))
    assert approx(out["loss"], 0.5 * soft_all + 0.5 * -LN(0.5))
    # A fully unlabelled batch behaves like labels=None.
    none = distillation_loss(student, teacher, labels=torch.tensor([-100, -100]), alpha=0.5, temperature=1.0)
    assert approx(none["loss"], soft_all)


def test_distillation_rejects_bad_alpha_and_gradients():
    s = torch.randn(2, 3, requires_grad=True)
    te = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, te, alpha=1.5)
    distillation_loss(s, te, labels=torch.tensor([1, 2]))["loss"].backward()
    assert s.grad is not None and te.grad is None


# --------------------------------------------------------------------------------------------------
# hidden_state_loss / make_projections
# --------------------------------------------------------------------------------------------------


def test_hidden_mse_identical_is_zero_and_hand_value():
    h = torch.randn(2, 3, 4)
    assert approx(hidden_state_loss((h, h), (h.clone(), h.clone()), [(0, 0), (1, 1)]), 0.0)
    student = t([[[1.0, 2.0], [3.0, 4.0]]])
    teacher = t([[[1.0, 0.0], [3.0, 6.0]]])
    # squared diffs 0,4,0,4 -> mean over 2 tokens x 2 dims = 2.0
    assert approx(hidden_state_loss((student,), (teacher,), [(0, 0)]), 2.0)


def test_hidden_mse_mean_over_pairs_and_layer_indexing():
    zero = torch.zeros(1, 1, 2)
    one = torch.ones(1, 1, 2)
    # teacher index 2 (= ones) vs student index 1 (= zeros) -> 1.0; (0, 0) -> 0.0; mean 0.5.
    loss = hidden_state_loss((zero, zero), (zero, zero, one), [(0, 0), (2, 1)])
    assert approx(loss, 0.5)


def test_hidden_mse_padding_tokens_excluded():
    student = t([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])
    teacher = t([[[1.0, 0.0], [3.0, 6.0], [-100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert approx(hidden_state_loss((student,), (teacher,), [(0, 0)], attention_mask=mask), 2.0)
    assert not approx(hidden_state_loss((student,), (teacher,), [(0, 0)]), 2.0)


def test_hidden_width_mismatch_without_projection_raises():
    s = (torch.zeros(1, 2, 384),)
    te = (torch.zeros(1, 2, 768),)
    msg = r"student width 384 != teacher width 768: pass projections \(see make_projections\)"
    with pytest.raises(ValueError, match=msg):
        hidden_state_loss(s, te, [(0, 0)])


def test_make_projections_shapes_and_equal_width():
    projs = make_projections(4, 6, 2)
    assert len(projs) == 2
    assert all(isinstance(p, torch.nn.Linear) and p.weight.shape == (6, 4) for p in projs)
    same = make_projections(8, 8, 3)
    assert isinstance(same, torch.nn.ModuleList) and len(same) == 0
    h = torch.randn(1, 2, 8)
    # The empty list is accepted and means "no projection".
    assert approx(hidden_state_loss((h,), (h.clone(),), [(0, 0)], projections=same), 0.0)


def test_hidden_projection_hand_value_and_gradient():
    projs = make_projections(2, 3, 1)
    with torch.no_grad():
        projs[0].weight.copy_(t([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))  # pad student with a zero dim
        projs[0].bias.zero_()
    student = t([[[1.0, 2.0]]]).requires_grad_()
    teacher = t([[[1.0, 2.0, 3.0]]]).requires_grad_()
    loss = hidden_state_loss((student,), (teacher,), [(0, 0)], projections=projs)
    assert approx(loss, 9.0 / 3)  # only the padded dim differs: (0 - 3)^2 / 3 dims
    loss.backward()
    assert projs[0].weight.grad is not None and projs[0].weight.grad.abs().sum() > 0
    assert student.grad is not None and teacher.grad is None


def test_hidden_cosine_identical_opposite_orthogonal():
    h = t([[[1.0, 2.0], [3.0, -1.0]]])
    assert approx(hidden_state_loss((h,), (h.clone(),), [(0, 0)], kind="cosine"), 0.0)
    assert approx(hidden_state_loss((h,), (-h,), [(0, 0)], kind="cosine"), 2.0)
    orth = t([[[-2.0, 1.0], [1.0, 3.0]]])
    assert approx(hidden_state_loss((h,), (orth,), [(0, 0)], kind="cosine"), 1.0)
    # Padding: token 1 opposite, token 0 identical -> masked value 0.0, unmasked mean 1.0.
    mixed_t = t([[[1.0, 2.0], [-3.0, 1.0]]])
    assert approx(hidden_state_loss((h,), (mixed_t,), [(0, 0)], kind="cosine"), 1.0)
    mask = torch.tensor([[1, 0]])
    assert approx(hidden_state_loss((h,), (mixed_t,), [(0, 0)], attention_mask=mask, kind="cosine"), 0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_hidden_half_precision_is_finite_float32(dtype):
    # (600)^2 = 3.6e5 overflows fp16 (max 65504) unless the loss upcasts first.
    s = torch.full((1, 2, 4), 300.0, dtype=dtype)
    te = torch.full((1, 2, 4), -300.0, dtype=dtype)
    out = hidden_state_loss((s,), (te,), [(0, 0)])
    assert out.dtype == torch.float32 and approx(out, 360000.0)
    projs = make_projections(4, 8, 1)
    out = hidden_state_loss((s,), (torch.zeros(1, 2, 8, dtype=dtype),), [(0, 0)], projections=projs)
    assert out.dtype == torch.float32 and torch.isfinite(out)


# --------------------------------------------------------------------------------------------------
# attention_loss
# --------------------------------------------------------------------------------------------------

# 1 batch, 1 head, L=2. Rows are query positions.
ATT_T = t([[[[0.8, 0.2], [0.5, 0.5]]]])
ATT_S = t([[[[0.5, 0.5], [0.25, 0.75]]]])
KL_ROW1 = 0.5 * LN(0.5 / 0.25) + 0.5 * LN(0.5 / 0.75)


def test_attention_kl_identical_is_zero():
    a = torch.softmax(torch.randn(2, 3, 4, 4), dim=-1)
    assert approx(attention_loss((a,), (a.clone(),), [(0, 0)]), 0.0)


def test_attention_kl_hand_value_one_head():
    assert approx(attention_loss((ATT_S,), (ATT_T,), [(0, 0)]), (KL_82_55 + KL_ROW1) / 2)


def test_attention_kl_padding_query_rows_and_keys_excluded():
    # Padding position 1: query row 1 is dropped and key column 1 contributes 0 -> only 0.8 ln(0.8/0.5).
    mask = torch.tensor([[1, 0]])
    assert approx(attention_loss((ATT_S,), (ATT_T,), [(0, 0)], attention_mask=mask), 0.8 * LN(1.6))
    # Appending a padded third position with garbage leaves the unpadded value unchanged.
    s = torch.zeros(1, 1, 3, 3)
    te = torch.zeros(1, 1, 3, 3)
    s[..., :2, :2], te[..., :2, :2] = ATT_S, ATT_T
    s[..., 2, :] = t([0.9, 0.05, 0.05])
    te[..., 2, :] = t([0.0, 0.0, 1.0])
    mask3 = torch.tensor([[1, 1, 0]])
    expected = (KL_82_55 + KL_ROW1) / 2
    assert approx(attention_loss((s,), (te,), [(0, 0)], attention_mask=mask3), expected)
    assert not approx(attention_loss((s,), (te,), [(0, 0)]), expected)


def test_attention_mse_hand_value():
    # diffs 0.3, -0.3, 0.25, -0.25 -> (0.09 + 0.09 + 0.0625 + 0.0625) / 4
    assert approx(attention_loss((ATT_S,), (ATT_T,), [(0, 0)], kind="mse"), 0.07625)
    # With position 1 padded only the (0, 0) entry counts: 0.3^2.
    mask = torch.tensor([[1, 0]])
    assert approx(attention_loss((ATT_S,), (ATT_T,), [(0, 0)], attention_mask=mask, kind="mse"), 0.09)


def test_attention_head_mismatch_averages_heads():
    # Teacher 2 heads whose mean is ATT_T; student 1 head -> same as the 1-head hand value.
    teacher = t([[[[0.9, 0.1], [0.6, 0.4]], [[0.7, 0.3], [0.4, 0.6]]]])
    assert approx(attention_loss((ATT_S,), (teacher,), [(0, 0)]), (KL_82_55 + KL_ROW1) / 2)
    # Student 2 heads averaging to ATT_S vs teacher 4 heads averaging to ATT_T.
    student = t([[[[0.4, 0.6], [0.25, 0.75]], [[0.6, 0.4], [0.25, 0.75]]]])
    teacher4 = torch.cat([teacher, teacher], dim=1)
    assert approx(attention_loss((student,), (teacher4,), [(0, 0)]), (KL_82_55 + KL_ROW1) / 2)


def test_attention_layer_indexing_and_mean_over_pairs():
    # attention index 1 of the teacher is ATT_T; student index 0 is ATT_S; pair (0, 1) is identical.
    loss = attention_loss((ATT_S, ATT_T), (ATT_T.clone(), ATT_T), [(1, 0), (0, 1)])
    assert approx(loss, (KL_82_55 + KL_ROW1) / 4)


def test_attention_zero_probs_finite_and_gradients():
    # Causal maps: exact zeros above the diagonal in both; teacher mass where student has 0 stays finite.
    s = t([[[[1.0, 0.0], [1.0, 0.0]]]]).requires_grad_()
    te = t([[[[1.0, 0.0], [0.5, 0.5]]]]).requires_grad_()
    out = attention_loss((s,), (te,), [(0, 0)])
    assert torch.isfinite(out)
    out.backward()
    assert torch.isfinite(s.grad).all() and te.grad is None
    with pytest.raises(ValueError, match="eager"):
        attention_loss((None,), (te,), [(0, 0)])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_half_precision_float32(dtype):
    a = torch.softmax(torch.randn(1, 2, 3, 3) * 50, dim=-1).to(dtype)
    b = torch.softmax(torch.randn(1, 2, 3, 3) * 50, dim=-1).to(dtype)
    for kind in ("kl", "mse"):
        out = attention_loss((a,), (b,), [(0, 0)], kind=kind)
        assert out.dtype == torch.float32 and torch.isfinite(out)


# --------------------------------------------------------------------------------------------------
# layer maps
# --------------------------------------------------------------------------------------------------


def test_uniform_layer_map_examples():
    assert uniform_layer_map(6, 3) == [(0, 0), (2, 1), (4, 2), (6, 3)]
    assert uniform_layer_map(12, 6) == [(0, 0), (2, 1), (4, 2), (6, 3), (8, 4), (10, 5), (12, 6)]
    assert uniform_layer_map(30, 10) == [(0, 0)] + [(3 * j, j) for j in range(1, 11)]
    # Half-up rounding: 5 * 1 / 2 = 2.5 -> 3 (Python's round() would give 2).
    assert uniform_layer_map(5, 2) == [(0, 0), (3, 1), (5, 2)]
    with pytest.raises(ValueError):
        uniform_layer_map(0, 3)


def test_hidden_to_attention_map():
    assert hidden_to_attention_map([(0, 0), (2, 1), (4, 2), (6, 3)]) == [(1, 0), (3, 1), (5, 2)]
    assert hidden_to_attention_map(uniform_layer_map(12, 6)) == [
        (1, 0),
        (3, 1),
        (5, 2),
        (7, 3),
        (9, 4),
        (11, 5),
    ]
    with pytest.raises(ValueError, match="embedding"):
        hidden_to_attention_map([(0, 1)])


# --------------------------------------------------------------------------------------------------
# token_kl / generalized_jsd
# --------------------------------------------------------------------------------------------------

# (B=1, L=2, V=2): position 0 is the hand example, position 1 is garbage with label -100.
TOK_S = t([[logits_of(0.5, 0.5), [40.0, -40.0]]])
TOK_T = t([[logits_of(0.8, 0.2), [-40.0, 40.0]]])
TOK_LABELS = torch.tensor([[1, -100]])


def test_token_kl_forward_reverse_hand_values():
    assert approx(token_kl(TOK_S, TOK_T, TOK_LABELS, kind="forward"), KL_82_55)
    assert approx(token_kl(TOK_S, TOK_T, TOK_LABELS, kind="reverse"), KL_55_82)
    # Without labels the garbage position counts and the value changes.
    assert not approx(token_kl(TOK_S, TOK_T, kind="forward"), KL_82_55)
    with pytest.raises(ValueError, match="kind"):
        token_kl(TOK_S, TOK_T, kind="sideways")


def test_token_kl_temperature_has_no_t_squared_factor():
    s, te = TOK_S * 2, TOK_T * 2
    assert approx(token_kl(s, te, TOK_LABELS, temperature=2.0), KL_82_55)


def test_token_kl_gradients_and_half_precision():
    s = torch.randn(2, 3, 5, requires_grad=True)
    te = torch.randn(2, 3, 5, requires_grad=True)
    token_kl(s, te, kind="reverse").backward()
    assert s.grad is not None and te.grad is None
    big_s = torch.tensor([[[1e4, -1e4]]], dtype=torch.bfloat16)
    big_t = torch.tensor([[[-1e4, 1e4]]], dtype=torch.bfloat16)
    for kind in ("forward", "reverse"):
        out = token_kl(big_s, big_t, kind=kind)
        assert out.dtype == torch.float32 and torch.isfinite(out)


def test_generalized_jsd_beta_limits():
    assert approx(generalized_jsd(TOK_S, TOK_T, TOK_LABELS, beta=0.0), KL_82_55)
    assert approx(generalized_jsd(TOK_S, TOK_T, TOK_LABELS, beta=1.0), KL_55_82)


def direct_jsd(p_t: list[float], p_s: list[float], beta: float) -> float:
    """TRL's generalized JSD from its definition, in plain Python."""
    m = [beta * a + (1 - beta) * b for a, b in zip(p_t, p_s, strict=True)]
    kl_t = sum(a * LN(a / c) for a, c in zip(p_t, m, strict=True))
    kl_s = sum(b * LN(b / c) for b, c in zip(p_s, m, strict=True))
    return beta * kl_t + (1 - beta) * kl_s


@pytest.mark.parametrize("beta", [0.5, 0.3, 0.9])
def test_generalized_jsd_matches_direct_formula(beta):
    out = generalized_jsd(TOK_S, TOK_T, TOK_LABELS, beta=beta)
    assert approx(out, direct_jsd([0.8, 0.2], [0.5, 0.5], beta))


def test_generalized_jsd_symmetric_at_half_and_zero_for_identical():
    forward = generalized_jsd(TOK_S, TOK_T, TOK_LABELS, beta=0.5)
    swapped = generalized_jsd(TOK_T, TOK_S, TOK_LABELS, beta=0.5)
    assert approx(forward, swapped.item())
    # Identity of the definition: swapping student/teacher roles maps beta to 1 - beta.
    assert approx(
        generalized_jsd(TOK_S, TOK_T, TOK_LABELS, beta=0.3),
        generalized_jsd(TOK_T, TOK_S, TOK_LABELS, beta=0.7).item(),
    )
    x = torch.randn(2, 3, 11)
    for beta in (0.0, 0.5, 1.0):
        assert approx(generalized_jsd(x, x.clone(), beta=beta), 0.0)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(x, x, beta=1.5)


def test_generalized_jsd_half_precision_and_gradient():
    s = (torch.randn(1, 2, 6) * 1e4).to(torch.float16).requires_grad_()
    te = (torch.randn(1, 2, 6) * 1e4).to(torch.float16).requires_grad_()
    out = generalized_jsd(s, te, torch.tensor([[3, -100]]), beta=0.5)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    # JSD is bounded by ln 2 at beta = 0.5.
    assert 0.0 <= out.item() <= LN(2) + 1e-6
    out.backward()
    assert torch.isfinite(s.grad).all() and te.grad is None
