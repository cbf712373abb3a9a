"""On-policy (GKD) and sequence-level distillation in CLMTrainer, on tiny random Llamas."""
# ruff: noqa: F811 (the fixtures imported from test_clm_trainer are parameters of the tests)

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hfkit.data.lm import IGNORE_INDEX, completion_batch, policy_prompts
from hfkit.losses import generalized_jsd
from hfkit.trainers.clm_trainer import CLMTrainer
from tests.trainers.test_clm_trainer import blocks, collate, config, pairs, tokenizer  # noqa: F401 (fixtures)
from tests.unit.data.test_lm import EOS, PAD, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- batches built from generated text -----------------------------------------------------------------


def test_prompts_are_what_precedes_the_first_learned_token_or_the_first_tokens_of_plain_text():
    batch = {
        # row 0: prompt/response (3 prompt tokens, labels on 2), right-padded; row 1: plain text, all learned.
        "input_ids": torch.tensor([[11, 12, 13, 14, 15, PAD, PAD], [21, 22, 23, 24, 25, 26, 27]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]]),
        "labels": torch.tensor([[-100, -100, -100, 14, 15, -100, -100], [21, 22, 23, 24, 25, 26, 27]]),
    }
    ids, mask = policy_prompts(batch, prompt_tokens=2, pad_token_id=PAD)
    assert ids.tolist() == [[11, 12, 13], [PAD, 21, 22]]  # left-padded for generate
    assert mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    # A plain-text row never gives all its tokens away as prompt.
    short = {k: v[1:, :3] for k, v in batch.items()}
    assert policy_prompts(short, prompt_tokens=64, pad_token_id=PAD)[0].tolist() == [[21, 22]]


def test_completion_learns_up_to_the_first_eos_by_position_even_when_pad_is_eos():
    # pad == eos == 3: the first 3 of the completion is learned (the student must learn to stop), the rest not.
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    sequences = torch.tensor([[3, 11, 12, 30, 3, 3, 3], [13, 14, 15, 31, 32, 33, 34]])
    batch = completion_batch(sequences, prompt_mask, eos_token_ids=[3])
    assert batch["labels"].tolist() == [
        [-100, -100, -100, 30, 3, -100, -100],  # prompt and left pad unlearned; EOS learned once
        [-100, -100, -100, 31, 32, 33, 34],  # no EOS: the whole completion
    ]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 0, 1, 2, 3, 3, 3], [0, 1, 2, 3, 4, 5, 6]]
    # Several stop ids (Llama 3 style): the first of any of them ends the completion.
    two = completion_batch(torch.tensor([[11, 40, 41, 42]]), torch.tensor([[1]]), eos_token_ids=[41, 99])
    assert two["labels"].tolist() == [[-100, 40, 41, -100]]


# ---- the trainer -----------------------------------------------------------------------------------------


def trainer_for(tmp_path, dataset, tok, teacher=None, **overrides):
    teacher = teacher if teacher is not None else tiny_llama(layers=3, seed=1)
    args = config(tmp_path, **{"alpha": 0.5, "temperature": 1.0, "learning_rate": 1e-3, **overrides})
    student = tiny_llama(seed=2)
    return (
        CLMTrainer(
            model=student, args=args, train_dataset=dataset, processing_class=tok, teacher_model=teacher
        ),
        student,
        teacher,
    )


@pytest.mark.parametrize("bad", [{"lmbda": 1.5}, {"max_new_tokens": 0}, {"generation_temperature": -1.0}])
def test_config_refuses_bad_on_policy_settings(tmp_path, bad):
    with pytest.raises(ValueError, match="lmbda must be in|max_new_tokens must be|generation_temperature"):
        config(tmp_path, **bad)
    with pytest.raises(ValueError, match="no cache holds"):
        config(tmp_path, lmbda=0.5, teacher_topk=4, teacher_logits_cache=str(tmp_path / "c"))


def test_lmbda_zero_is_off_policy_kd_exactly(tmp_path, tokenizer, pairs, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("lmbda=0 must not generate")

    losses = {}
    for name, overrides in {"plain": {}, "lmbda0": {"lmbda": 0.0, "max_new_tokens": 5}}.items():
        trainer, student, _ = trainer_for(tmp_path / name, pairs, tokenizer, **overrides)
        monkeypatch.setattr(student, "generate", never)
        trainer.train()
        losses[name] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        weights = [p.detach().clone() for p in student.parameters()]
        losses[name + "_weights"] = weights
    assert losses["plain"] == losses["lmbda0"]
    assert all(torch.equal(a, b) for a, b in zip(losses["plain_weights"], losses["lmbda0_weights"]))


def test_on_policy_batch_is_the_students_continuation_and_its_loss_is_the_divergence_alone(
    tmp_path,
    tokenizer,
    pairs,
):
    trainer, student, teacher = trainer_for(
        tmp_path, pairs, tokenizer, lmbda=1.0, max_new_tokens=4, generation_temperature=0.0, temperature=2.0
    )
    batch = collate(pairs)
    generated = trainer.generated_batch(student, batch)
    prompt_ids, prompt_mask = policy_prompts(batch, 64, PAD)
    # Greedy: the continuation is the student's own greedy tokens after each prompt.
    with torch.no_grad():
        expected = student.generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=4, do_sample=False,
            pad_token_id=PAD, eos_token_id=[EOS],
        )  # fmt: skip
    assert torch.equal(generated["input_ids"], expected)
    assert (generated["labels"][:, : prompt_ids.shape[1]] == IGNORE_INDEX).all()
    student.train()

    # The loss on that batch: T^2 * KL(teacher || student) over the generated tokens, no CE.
    inputs = {k: generated[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        s = student(**inputs).logits[:, :-1]
        t = teacher(**inputs).logits[:, :-1]
    labels = generated["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    log_s, log_t = F.log_softmax(s[keep] / 2.0, -1), F.log_softmax(t[keep] / 2.0, -1)
    kd = (log_t.exp() * (log_t - log_s)).sum(-1).mean().item()
    trainer._batch_source = "student"
    loss = trainer.compute_loss(student, generated)
    assert loss.item() == pytest.approx(4 * kd, rel=1e-5)
    assert "ce" not in trainer._loss_parts or not trainer._loss_parts["ce"]

    # Training: every micro-batch generated, the teacher untouched and without gradient, train mode restored.
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []
    original = student.generate

    def counted(*args, **kwargs):
        calls.append(student.training)
        return original(*args, **kwargs)

    student.generate = counted
    trainer._loss_parts.clear()
    trainer.train()
    assert calls == [False, False]  # two steps, each sampled in eval mode
    assert student.training
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert all(p.grad is None for p in teacher.parameters())


def test_seq_kd_trains_on_the_teachers_text_and_lmbda_draws_are_reproducible(tmp_path, tokenizer, pairs):
    trainer, student, teacher = trainer_for(
        tmp_path, pairs, tokenizer, seq_kd=True, lmbda=0.5, max_new_tokens=3, max_steps=8
    )
    sources = []
    original = trainer.generated_batch

    def recorded(generator, inputs):
        sources.append("student" if generator is student else "teacher" if generator is teacher else "?")
        return original(generator, inputs)

    trainer.generated_batch = recorded
    trainer.train()
    assert len(sources) == 8 and set(sources) == {"student", "teacher"}
    again, s2, t2 = trainer_for(
        tmp_path / "b", pairs, tokenizer, seq_kd=True, lmbda=0.5, max_new_tokens=3, max_steps=8
    )
    draws = []
    again.generated_batch = lambda g, i: (
        draws.append("student" if g is s2 else "teacher") or original.__func__(again, g, i)
    )
    again.train()
    assert draws == sources


def test_on_policy_needs_a_live_teacher(tmp_path, tokenizer, pairs):
    with pytest.raises(ValueError, match="need the teacher in the loop"):
        CLMTrainer(
            model=tiny_llama(seed=2), args=config(tmp_path, lmbda=0.5), train_dataset=pairs,
            processing_class=tokenizer,
        )  # fmt: skip


def test_generalized_jsd_equals_trls_gkd_loss():
    trl = pytest.importorskip("trl.experimental.gkd", reason="trl not installed (dev extra)")
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.tensor([[1, 2, -100, 3, 4], [-100, 5, 6, 7, -100]])
    for beta in (0.0, 0.3, 0.5, 1.0):
        ours = generalized_jsd(s, t, labels, beta=beta, temperature=1.0)
        theirs = trl.GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta, temperature=1.0)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
