"""Unit tests for hfkit.losses.layers against hand-computed values: hidden-state and attention transfer."""

from __future__ import annotations

import pytest
import torch

from hfkit.losses import (
    attention_loss,
    hidden_state_loss,
    hidden_to_attention_map,
    make_projections,
    uniform_layer_map,
)
from tests.unit.losses.hand_values import KL_82_55, LN, approx, t

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
