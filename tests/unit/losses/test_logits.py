"""Unit tests for hfkit.losses.logits against hand-computed values: soft-label KL, cross-entropy, their mix."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfkit.losses import (
    TEACHER_COMBINATIONS,
    combine_teachers,
    distillation_loss,
    hard_label_ce,
    soft_label_kl,
    soft_target_kl,
    teacher_weights,
)
from tests.unit.losses.hand_values import KL_55_82, KL_82_55, LN, approx, logits_of, t

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
# several teachers: teacher_weights, combine_teachers, soft_target_kl, distillation_loss with (B, K, C)
# --------------------------------------------------------------------------------------------------

# Two teachers on one example: teacher 0 says [0.8, 0.2], teacher 1 says [0.4, 0.6].
TWO = t([[logits_of(0.8, 0.2), logits_of(0.4, 0.6)]])


def combined(rule: str, labels=None, weights=None, temperature: float = 1.0) -> list[float]:
    return combine_teachers(TWO, temperature, rule, weights, labels).exp()[0].tolist()


@pytest.mark.parametrize(
    ("rule", "labels", "weights", "expected"),
    [
        # mean: (0.8 + 0.4) / 2.
        ("mean", None, None, [0.6, 0.4]),
        # weighted [3, 1] -> 0.75 * 0.8 + 0.25 * 0.4; the weights are normalised to sum to 1.
        ("weighted", None, [3.0, 1.0], [0.7, 0.3]),
        ("weighted", None, [1.0, 0.0], [0.8, 0.2]),
        # confidence: weights 0.8 : 0.6 (each teacher's max probability) -> (0.8 * 0.8 + 0.6 * 0.4) / 1.4.
        ("confidence", None, None, [0.88 / 1.4, 1 - 0.88 / 1.4]),
        # gold = 1: teachers give it 0.2 and 0.6 -> weights 0.25 / 0.75 -> 0.25 * 0.8 + 0.75 * 0.4 = 0.5.
        ("gold", torch.tensor([1]), None, [0.5, 0.5]),
        # gold = 0: 0.8 and 0.4 -> weights 2/3, 1/3 -> 2/3 * 0.8 + 1/3 * 0.4.
        ("gold", torch.tensor([0]), None, [2 / 3 * 0.8 + 0.4 / 3, 1 - (2 / 3 * 0.8 + 0.4 / 3)]),
        # no gold label (ignored row, or no labels at all): the mean.
        ("gold", torch.tensor([-100]), None, [0.6, 0.4]),
        ("gold", None, None, [0.6, 0.4]),
    ],
)
def test_combined_teacher_targets_hand_values(rule, labels, weights, expected):
    assert combined(rule, labels, weights) == pytest.approx(expected, abs=1e-6)


def test_teacher_weights_are_per_example():
    # Row 0 as TWO; row 1 swaps the teachers: confidence and gold weights follow each row's teachers.
    logits = torch.cat([TWO, TWO.flip(1)])
    conf = teacher_weights(logits, "confidence")
    assert torch.allclose(conf, t([[0.8 / 1.4, 0.6 / 1.4], [0.6 / 1.4, 0.8 / 1.4]]))
    gold = teacher_weights(logits, "gold", labels=torch.tensor([1, -100]))
    assert torch.allclose(gold, t([[0.25, 0.75], [0.5, 0.5]]))
    assert torch.allclose(teacher_weights(logits, "weighted", weights=[1, 3]), t([[0.25, 0.75]] * 2))


def test_combination_averages_softened_probabilities_and_confidence_uses_t1():
    torch.manual_seed(0)
    logits, T = torch.randn(3, 2, 4) * 3, 2.5
    mean = combine_teachers(logits, T, "mean").exp()
    assert torch.allclose(mean, (logits / T).softmax(-1).mean(1), atol=1e-6)
    # confidence weights come from the teachers' own (T = 1) probabilities, applied to the softened ones.
    w = logits.softmax(-1).amax(-1)
    w = w / w.sum(-1, keepdim=True)
    expected = (w[..., None] * (logits / T).softmax(-1)).sum(1)
    assert torch.allclose(combine_teachers(logits, T, "confidence").exp(), expected, atol=1e-6)


def test_teacher_weights_reject_bad_rules_and_weights():
    with pytest.raises(ValueError, match="rule must be one of"):
        teacher_weights(TWO, "max")
    with pytest.raises(ValueError, match="2 teachers, 3 weights"):
        teacher_weights(TWO, "weighted", weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="2 teachers, none"):
        teacher_weights(TWO, "weighted")
    with pytest.raises(ValueError, match="positive sum"):
        teacher_weights(TWO, "weighted", weights=[0.0, 0.0])


def test_soft_target_kl_matches_soft_label_kl():
    torch.manual_seed(1)
    s, te, T = torch.randn(4, 3), torch.randn(4, 3), 2.0
    target = F.log_softmax(te / T, dim=-1)
    assert approx(soft_target_kl(s, target, T), soft_label_kl(s, te, T).item())
    # The hand value: target [0.8, 0.2] against a uniform student.
    assert approx(soft_target_kl(t([logits_of(0.5, 0.5)]), t([logits_of(0.8, 0.2)])), KL_82_55)


@pytest.mark.parametrize("rule", TEACHER_COMBINATIONS)
def test_identical_teachers_give_the_one_teacher_loss(rule):
    torch.manual_seed(2)
    s, te, labels = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 2, -100, 1, 1])
    one = distillation_loss(s, te, labels, alpha=0.4, temperature=2.0)
    two = distillation_loss(
        s, torch.stack([te, te], dim=1), labels, alpha=0.4, temperature=2.0, combination=rule, weights=[2, 1]
    )
    for key in ("loss", "soft", "hard"):
        assert approx(two[key], one[key].item()), key


def test_multi_teacher_distillation_hand_value_and_gradients():
    student = t([logits_of(0.5, 0.5)], requires_grad=True)
    teachers = TWO.clone().requires_grad_(True)
    out = distillation_loss(
        student, teachers, torch.tensor([1]), alpha=1.0, temperature=1.0, combination="gold"
    )
    # gold target [0.5, 0.5] = the student's distribution: KL 0.
    assert approx(out["soft"], 0.0)
    out = distillation_loss(student, teachers, None, alpha=1.0, temperature=1.0, combination="weighted",
                            weights=[1.0, 0.0])  # fmt: skip
    assert approx(out["soft"], KL_82_55)
    out["loss"].backward()
    assert student.grad is not None and teachers.grad is None
