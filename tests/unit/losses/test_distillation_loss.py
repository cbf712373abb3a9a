"""The one distillation mix (hfkit.losses.distillation_loss) against hand-computed values.

Building blocks: student logits [0, 0] (uniform) and teacher logits [ln 3, 0] (probabilities [3/4, 1/4]):
  KL(teacher || student) = 3/4 ln(3/2) + 1/4 ln(1/2)             = 0.1308120
  KL(student || teacher) = 1/2 ln(2/3) + 1/2 ln 2                 = 0.1438410
  CE of student [ln 3, 0] on label 0 = -ln(3/4) = 0.2876821; on label 1 = -ln(1/4) = 1.3862944
Doubling the teacher's logits and using T = 2 gives the same softened teacher, so the soft term is exactly
T^2 = 4 times the T = 1 divergence.
"""

from __future__ import annotations

import math

import pytest
import torch

from hfkit.losses import check_temperature, distillation_loss, mix_soft_and_hard
from hfkit.trainers import base_config

LN3 = math.log(3.0)
KL_T_S = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
KL_S_T = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
CE0, CE1 = -math.log(0.75), -math.log(0.25)


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_soft_term_is_t_squared_times_the_kl():
    student, teacher = t([0.0, 0.0]), t([2 * LN3, 0.0])
    out = distillation_loss(student, teacher, alpha=1.0, temperature=2.0)
    assert out["soft"].item() == pytest.approx(4 * KL_T_S, rel=1e-6)
    assert out["loss"].item() == pytest.approx(4 * KL_T_S, rel=1e-6)
    # At T = 1 the same softened teacher needs the undoubled logits, and there is no factor.
    assert distillation_loss(student, t([LN3, 0.0]), alpha=1.0, temperature=1.0)[
        "soft"
    ].item() == pytest.approx(KL_T_S, rel=1e-6)


def test_alpha_one_is_soft_only_alpha_zero_is_hard_only_and_between_mixes():
    student, teacher, labels = t([LN3, 0.0]), t([LN3, 0.0]), torch.tensor([0])
    # Identical distributions: the soft term is 0, so alpha = 1 gives 0 whatever the label.
    assert distillation_loss(student, teacher, labels, alpha=1.0, temperature=2.0)[
        "loss"
    ].item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(student, teacher, labels, alpha=0.0)["loss"].item() == pytest.approx(
        CE0, rel=1e-6
    )
    uniform = t([0.0, 0.0])
    mixed = distillation_loss(uniform, t([2 * LN3, 0.0]), torch.tensor([0]), alpha=0.25, temperature=2.0)
    assert mixed["loss"].item() == pytest.approx(0.25 * 4 * KL_T_S + 0.75 * math.log(2), rel=1e-6)


def test_class_weights_weight_the_hard_mean():
    student, labels = t([LN3, 0.0], [LN3, 0.0]), torch.tensor([0, 1])
    out = distillation_loss(student, student, labels, alpha=0.0, class_weights=torch.tensor([1.0, 3.0]))
    # Weighted mean as torch's: (1 * CE0 + 3 * CE1) / (1 + 3); unweighted it would be (CE0 + CE1) / 2.
    assert out["hard"].item() == pytest.approx((CE0 + 3 * CE1) / 4, rel=1e-6)
    assert out["loss"].item() == pytest.approx((CE0 + 3 * CE1) / 4, rel=1e-6)


def test_label_smoothing_smooths_the_hard_target():
    out = distillation_loss(t([LN3, 0.0]), t([LN3, 0.0]), torch.tensor([0]), alpha=0.0, label_smoothing=0.2)
    # Target [0.9, 0.1] (1 - eps + eps / C, eps / C): CE = 0.9 * CE0 + 0.1 * CE1.
    assert out["loss"].item() == pytest.approx(0.9 * CE0 + 0.1 * CE1, rel=1e-6)


def test_ignore_index_rows_get_the_soft_term_only():
    student, teacher = t([0.0, 0.0], [0.0, 0.0]), t([LN3, 0.0], [LN3, 0.0])
    out = distillation_loss(student, teacher, torch.tensor([0, -100]), alpha=0.5, temperature=1.0)
    # Soft over both rows, hard over row 0 only (uniform student: CE = ln 2).
    assert out["soft"].item() == pytest.approx(KL_T_S, rel=1e-6)
    assert out["hard"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * KL_T_S + 0.5 * math.log(2), rel=1e-6)
    # No gold label at all: the soft term alone (not alpha * soft), as with labels=None.
    none = distillation_loss(student, teacher, torch.tensor([-100, -100]), alpha=0.5, temperature=1.0)
    assert none["loss"].item() == pytest.approx(KL_T_S, rel=1e-6)


def test_a_teacher_with_fewer_classes_teaches_the_first_ones():
    # Learning without Forgetting: the previous model knows classes 0-1, the student 0-2; logit 2 is not compared.
    student = t([0.0, 0.0, 5.0])
    out = distillation_loss(student, t([LN3, 0.0]), torch.tensor([2]), alpha=0.5, temperature=1.0)
    assert out["soft"].item() == pytest.approx(KL_T_S, rel=1e-6)
    ce2 = math.log(1 + 2 * math.exp(-5.0))  # -ln(e^5 / (1 + 1 + e^5)): the hard term covers all three classes
    assert out["loss"].item() == pytest.approx(0.5 * KL_T_S + 0.5 * ce2, rel=1e-6)


def test_token_divergences_get_the_same_t_squared_and_the_mask():
    # (1, 2, 2): position 0 is learned, position 1 is prompt/padding (label -100) with garbage logits.
    student = t([[0.0, 0.0], [50.0, -50.0]])
    teacher = t([[2 * LN3, 0.0], [-50.0, 50.0]])
    labels = torch.tensor([[0, -100]])
    mask = labels != -100
    reverse = distillation_loss(
        student, teacher, labels, alpha=1.0, temperature=2.0, mask=mask, divergence="reverse_kl"
    )
    assert reverse["loss"].item() == pytest.approx(4 * KL_S_T, rel=1e-5)
    forward = distillation_loss(student, teacher, labels, alpha=1.0, temperature=2.0, mask=mask)
    assert forward["loss"].item() == pytest.approx(4 * KL_T_S, rel=1e-5)
    # Top-k (k = 2 = V here) is the full divergence, with the same factor.
    top = teacher.topk(2, dim=-1)
    topk = distillation_loss(
        student, top.values, labels, alpha=1.0, temperature=2.0, mask=mask, teacher_topk_indices=top.indices
    )
    assert topk["loss"].item() == pytest.approx(4 * KL_T_S, rel=1e-5)


def test_one_temperature_check_for_losses_and_configs():
    assert base_config.check_temperature is check_temperature
    with pytest.raises(ValueError, match=r"temperature must be > 0, got 0.0; typical values are 1 to 4"):
        check_temperature(0.0, "1 to 4")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(t([0.0, 0.0]), t([0.0, 0.0]), temperature=-1.0)


def test_mix_of_a_precomputed_soft_term_is_the_same_mix():
    """A soft term made elsewhere (ULD pairs positions its own way) goes through the one mix."""
    student = t([LN3, 0.0], [LN3, 0.0])
    soft = torch.tensor(0.7)
    parts = mix_soft_and_hard(soft, student, torch.tensor([0, 1]), alpha=0.25)
    assert parts["hard"].item() == pytest.approx((CE0 + CE1) / 2)
    assert parts["loss"].item() == pytest.approx(0.25 * 0.7 + 0.75 * (CE0 + CE1) / 2)
    # Padding (mask) counts in neither term; a batch with no label left falls back to soft alone.
    masked = mix_soft_and_hard(
        soft, student, torch.tensor([0, 1]), alpha=0.25, mask=torch.tensor([True, False])
    )
    assert masked["hard"].item() == pytest.approx(CE0)
    assert mix_soft_and_hard(soft, student, torch.tensor([-100, -100]), alpha=0.25)[
        "loss"
    ].item() == pytest.approx(0.7)
    assert mix_soft_and_hard(soft, student, None, alpha=0.25) == {"loss": soft, "soft": soft}
    # distillation_loss is this mix over its own soft term.
    teacher = t([LN3, 0.0], [0.0, 0.0])
    whole = distillation_loss(student, teacher, torch.tensor([0, 1]), alpha=0.25, temperature=1.0)
    again = mix_soft_and_hard(whole["soft"], student, torch.tensor([0, 1]), alpha=0.25)
    assert torch.equal(whole["loss"], again["loss"])
    with pytest.raises(ValueError, match="alpha must be in"):
        mix_soft_and_hard(soft, student, None, alpha=1.5)
