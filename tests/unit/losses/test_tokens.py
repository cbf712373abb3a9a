"""Unit tests for hfkit.losses.tokens: token-level KL/JSD (hand values), their top-k forms and token_divergence."""

from __future__ import annotations

import math

import pytest
import torch

from hfkit.losses import (
    generalized_jsd,
    token_divergence,
    token_kl,
    topk_generalized_jsd,
    topk_token_kl,
)
from tests.unit.losses.hand_values import KL_55_82, KL_82_55, LN, approx, logits_of, t

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


def full_topk(logits: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All V logits as 'top-k' with k = V, in a random order per position (order must not matter)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack(
        [torch.randperm(logits.shape[-1], generator=generator) for _ in range(logits[..., 0].numel())]
    )
    order = order.view(*logits.shape)
    return torch.gather(logits, -1, order), order.to(torch.int32)


@pytest.fixture
def pair():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11) * 2, torch.randn(2, 5, 11) * 2
    labels = torch.tensor([[3, -100, 4, 5, 1], [-100, -100, 2, 2, 9]])
    return student, teacher, labels


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_topk_kl_with_k_equal_vocab_is_the_full_kl(pair, kind):
    student, teacher, labels = pair
    values, indices = full_topk(teacher)
    sparse = topk_token_kl(student, values, indices, labels, temperature=2.0, kind=kind)
    full = token_kl(student, teacher, labels, temperature=2.0, kind=kind)
    assert sparse.item() == pytest.approx(full.item(), rel=1e-5) and full.item() > 0.01


def test_topk_jsd_with_k_equal_vocab_is_the_full_jsd(pair):
    student, teacher, labels = pair
    values, indices = full_topk(teacher, seed=1)
    sparse = topk_generalized_jsd(student, values, indices, labels, beta=0.3, temperature=1.5)
    assert sparse.item() == pytest.approx(
        generalized_jsd(student, teacher, labels, 0.3, 1.5).item(), rel=1e-5
    )


def test_topk_kl_hand_value_renormalises_over_the_teacher_support():
    # Student p = [0.5, 0.3, 0.2]; teacher keeps tokens 0 and 2 with probabilities 0.6 and 0.2.
    # float64 (kept as float64 by the losses): the KL here is ~3e-3, too small for a tight float32 check.
    student = torch.tensor([[[LN(0.5), LN(0.3), LN(0.2)]]], dtype=torch.float64)
    values, indices = torch.tensor([[[LN(0.6), LN(0.2)]]], dtype=torch.float64), torch.tensor([[[0, 2]]])
    # On the support {0, 2}: teacher [0.75, 0.25], student [5/7, 2/7].
    forward = 0.75 * LN(0.75 / (5 / 7)) + 0.25 * LN(0.25 / (2 / 7))
    reverse = 5 / 7 * LN((5 / 7) / 0.75) + 2 / 7 * LN((2 / 7) / 0.25)
    assert topk_token_kl(student, values, indices).item() == pytest.approx(forward, rel=1e-9)
    assert topk_token_kl(student, values, indices, kind="reverse").item() == pytest.approx(reverse, rel=1e-9)
    # Temperature applies to the raw top-k logits: T = 2 takes square roots of the probabilities.
    t_probs = [
        math.sqrt(0.6) / (math.sqrt(0.6) + math.sqrt(0.2)),
        math.sqrt(0.2) / (math.sqrt(0.6) + math.sqrt(0.2)),
    ]
    s_probs = [
        math.sqrt(0.5) / (math.sqrt(0.5) + math.sqrt(0.2)),
        math.sqrt(0.2) / (math.sqrt(0.5) + math.sqrt(0.2)),
    ]
    at_t2 = sum(t * LN(t / s) for t, s in zip(t_probs, s_probs))
    assert topk_token_kl(student, values, indices, temperature=2.0).item() == pytest.approx(at_t2, rel=1e-9)


def test_ignored_positions_do_not_count(pair):
    student, teacher, labels = pair
    values, indices = teacher.topk(4, dim=-1)
    masked = topk_token_kl(student, values, indices, labels)
    # Garbage (huge logits) at ignored positions changes nothing; the mean is over the 6 labelled tokens only.
    noisy = student.clone()
    noisy[labels == -100] = 1e4
    assert topk_token_kl(noisy, values, indices, labels).item() == pytest.approx(masked.item(), rel=1e-6)
    keep = labels != -100
    per_token = [
        topk_token_kl(student[keep][i : i + 1], values[keep][i : i + 1], indices[keep][i : i + 1]).item()
        for i in range(int(keep.sum()))
    ]
    assert masked.item() == pytest.approx(sum(per_token) / len(per_token), rel=1e-5)


def test_all_ignored_gives_zero_with_a_graph():
    student = torch.randn(1, 3, 7, requires_grad=True)
    values, indices = torch.randn(1, 3, 2), torch.zeros(1, 3, 2, dtype=torch.long)
    loss = topk_token_kl(student, values, indices, torch.full((1, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_gradient_reaches_only_the_teacher_top_k_tokens():
    student = torch.randn(1, 1, 6, requires_grad=True)
    values, indices = torch.tensor([[[2.0, 1.0]]]), torch.tensor([[[4, 1]]])
    topk_token_kl(student, values, indices).backward()
    touched = (student.grad[0, 0] != 0).nonzero().flatten().tolist()
    assert touched == [1, 4]


def test_half_precision_inputs_give_a_float32_loss(pair):
    student, teacher, labels = pair
    values, indices = teacher.topk(4, dim=-1)
    half = topk_token_kl(student.bfloat16(), values.bfloat16(), indices, labels)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert half.item() == pytest.approx(topk_token_kl(student, values, indices, labels).item(), rel=0.05)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_token_divergence_dispatches_full_and_topk(pair, divergence):
    student, teacher, labels = pair
    reference = {
        "forward_kl": token_kl(student, teacher, labels, 2.0, "forward"),
        "reverse_kl": token_kl(student, teacher, labels, 2.0, "reverse"),
        "jsd": generalized_jsd(student, teacher, labels, 0.7, 2.0),
    }[divergence]
    full = token_divergence(student, teacher, labels, divergence, beta=0.7, temperature=2.0)
    values, indices = full_topk(teacher)
    sparse = token_divergence(student, values, labels, divergence, 0.7, 2.0, teacher_topk_indices=indices)
    assert full.item() == pytest.approx(reference.item(), rel=1e-6)
    assert sparse.item() == pytest.approx(reference.item(), rel=1e-5)


def test_bad_inputs_raise_clear_errors(pair):
    student, teacher, _ = pair
    values, indices = teacher.topk(3, dim=-1)
    with pytest.raises(ValueError, match="divergence must be one of"):
        token_divergence(student, teacher, divergence="kl")
    with pytest.raises(ValueError, match="values .* and indices .* differ in shape"):
        topk_token_kl(student, values, indices[..., :2])
    with pytest.raises(ValueError, match="must be integer token ids"):
        topk_token_kl(student, values, indices.float())
    with pytest.raises(ValueError, match="leading shape"):
        topk_token_kl(student[:, :4], values, indices)
    with pytest.raises(ValueError, match=r"need 1 <= k <= student vocab \(11\)"):
        topk_token_kl(student, torch.randn(2, 5, 12), torch.zeros(2, 5, 12, dtype=torch.long))


# ---- chunked token divergences ----------------------------------------------------------------------------


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_chunked_divergence_equals_the_unchunked_value_and_gradient(divergence, chunk_size):
    from hfkit.losses import chunked_token_divergence, token_divergence

    torch.manual_seed(0)
    student = torch.randn(2, 7, 13, requires_grad=True)
    teacher = torch.randn(2, 7, 13)
    labels = torch.tensor([[1, 2, -100, 4, 5, -100, -100], [-100, 1, 1, 1, 2, 3, 4]])
    whole = token_divergence(student, teacher, labels, divergence, beta=0.3, temperature=2.0)
    (grad_whole,) = torch.autograd.grad(whole, student)
    chunked = chunked_token_divergence(student, teacher, labels, divergence, 0.3, 2.0, chunk_size=chunk_size)
    (grad_chunked,) = torch.autograd.grad(chunked, student)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_chunked, grad_whole, rtol=1e-5, atol=1e-7)
    # Top-k teacher logits go through the same chunks.
    top = teacher.topk(4, dim=-1)
    whole_k = token_divergence(
        student, top.values, labels, divergence, 0.3, 2.0, teacher_topk_indices=top.indices
    )
    chunked_k = token_divergence(
        student,
        top.values,
        labels,
        divergence,
        0.3,
        2.0,
        teacher_topk_indices=top.indices,
        chunk_size=chunk_size,
    )
    torch.testing.assert_close(chunked_k, whole_k, rtol=1e-6, atol=1e-7)


def test_distillation_loss_with_chunks_equals_without():
    from hfkit.losses import distillation_loss

    torch.manual_seed(1)
    student, teacher = torch.randn(3, 5, 11), torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    labels[0, :2] = -100
    plain = distillation_loss(student, teacher, labels, alpha=0.4, temperature=2.0, mask=labels != -100)
    chunked = distillation_loss(
        student, teacher, labels, alpha=0.4, temperature=2.0, mask=labels != -100, chunk_size=4
    )
    torch.testing.assert_close(chunked["loss"], plain["loss"], rtol=1e-6, atol=1e-7)


# ---- ULD (cross-tokenizer) ----------------------------------------------------------------------------------


def test_uld_is_the_l1_distance_of_sorted_probabilities_by_hand():
    from hfkit.losses import uld_loss

    p_student = torch.tensor([0.2, 0.7, 0.1])  # sorted: 0.7 0.2 0.1 (0)
    p_teacher = torch.tensor([0.1, 0.3, 0.5, 0.1])  # sorted: 0.5 0.3 0.1 0.1
    loss = uld_loss(
        p_student.log().view(1, 1, 3), p_teacher.log().view(1, 1, 4),
        torch.tensor([[True]]), torch.tensor([[True]]),
    )  # fmt: skip
    assert loss.item() == pytest.approx(0.2 + 0.1 + 0.0 + 0.1, abs=1e-6)


def test_uld_pairs_the_ith_learned_positions_ignores_vocabulary_order_and_trains_the_student():
    from hfkit.losses import uld_loss

    torch.manual_seed(2)
    teacher = torch.randn(2, 6, 9)
    # The student's vocabulary is the teacher's, permuted: the same distributions under other ids cost 0.
    perm = torch.randperm(9)
    student_mask = torch.tensor([[0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    teacher_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    student = torch.zeros(2, 6, 9)
    student[0, 1:4] = teacher[0, 2:5][..., perm]  # teacher positions 2-4 are its 1st-3rd learned ones
    student[1, 0:2] = teacher[1, 1:3][..., perm]
    assert uld_loss(student, teacher, student_mask, teacher_mask).item() == pytest.approx(0.0, abs=1e-6)
    # Shift the pairing by one and it is no longer zero; the loss has a gradient for the student only.
    shifted = torch.zeros_like(student, requires_grad=True)
    with torch.no_grad():
        shifted[0, 1:4] = teacher[0, 3:6][..., perm]
    loss = uld_loss(shifted, teacher, student_mask, teacher_mask)
    assert loss.item() > 0.01
    loss.backward()
    assert shifted.grad[student_mask].abs().sum() > 0 and shifted.grad[~student_mask].abs().sum() == 0


def test_uld_top_k_is_exact_where_k_covers_a_vocabulary_and_a_tight_lower_bound_elsewhere():
    from hfkit.losses import uld_loss

    torch.manual_seed(3)
    student = torch.randn(1, 5, 12, requires_grad=True)
    teacher = torch.randn(1, 5, 20) * 2
    mask_s, mask_t = torch.ones(1, 5, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)
    exact = uld_loss(student, teacher, mask_s, mask_t)
    # k >= both vocabularies: the same computation as no k.
    assert torch.equal(uld_loss(student, teacher, mask_s, mask_t, top_k=20), exact)
    # k covers the student's 12 but not the teacher's 20: the teacher's tail meets only the student's zero
    # padding, so its mass is the exact cost of the tail.
    torch.testing.assert_close(uld_loss(student, teacher, mask_s, mask_t, top_k=12), exact)
    # k below both: the tails are compared by their masses, never more than 2 * min(tails) under the exact loss.
    p_s, p_t = torch.softmax(student, -1).detach(), torch.softmax(teacher, -1)
    k = 4
    tails = torch.minimum(1 - p_s.topk(k, -1).values.sum(-1), 1 - p_t.topk(k, -1).values.sum(-1))[0]
    approx = uld_loss(student, teacher, mask_s, mask_t, top_k=k)
    assert approx.item() <= exact.item() + 1e-6
    assert exact.item() <= approx.item() + (2 * tails).mean().item() + 1e-6
    # The tail term is there: against a peaked teacher (almost no tail) the flat student's tail mass is most of
    # the cost, so the heads alone would fall short of the exact loss by more than the bound allows.
    peaked = teacher * 10
    exact = uld_loss(student, peaked, mask_s, mask_t)
    approx = uld_loss(student, peaked, mask_s, mask_t, top_k=k)
    p_t = torch.softmax(peaked, -1)
    tails = torch.minimum(1 - p_s.topk(k, -1).values.sum(-1), 1 - p_t.topk(k, -1).values.sum(-1))[0]
    heads = (p_s.topk(k, -1).values - p_t.topk(k, -1).values).abs().sum(-1).mean()
    assert exact.item() > heads.item() + (2 * tails).mean().item()
    assert approx.item() <= exact.item() + 1e-6 <= approx.item() + (2 * tails).mean().item() + 2e-6
    approx.backward()
    assert student.grad.abs().sum() > 0
