"""Cross-tokenizer LM distillation (divergence 'uld'): a teacher of another vocabulary, on tiny Llamas."""
# ruff: noqa: F811 (the fixtures imported from test_clm_trainer are parameters of the tests)

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hfkit.data.lm import retokenize_batch
from hfkit.errors import UserInputError
from hfkit.losses import uld_loss
from hfkit.trainers.clm_trainer import CLMTrainer
from tests.trainers.test_clm_trainer import collate, config, pairs, tokenizer  # noqa: F401 (fixtures)
from tests.unit.data.test_lm import PAD, WORDS, tiny_llama, word_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_tokenizer():
    # Other ids for every word (reversed order) and a larger vocabulary: nothing id-wise is shared.
    return word_tokenizer(list(reversed(WORDS)) + ["extra", "words", "here"])


def test_rows_are_retokenized_text_for_text_with_the_learned_part_marked(tokenizer, teacher_tokenizer, pairs):
    batch = collate(pairs)
    other = retokenize_batch(batch, tokenizer, teacher_tokenizer, PAD)
    for i in range(len(pairs)):
        n = int(batch["attention_mask"][i].sum())
        first = int((batch["labels"][i][:n] != -100).nonzero()[0])
        ids, mask = other["input_ids"][i], other["attention_mask"][i].bool()
        assert teacher_tokenizer.decode(ids[mask], skip_special_tokens=True) == tokenizer.decode(
            batch["input_ids"][i][:n], skip_special_tokens=True
        )
        learned = ids[other["learned"][i]].tolist()
        # The learned part is the response, in the teacher's ids, ending with the teacher's EOS.
        assert teacher_tokenizer.decode(learned, skip_special_tokens=True) == tokenizer.decode(
            batch["input_ids"][i][first:n], skip_special_tokens=True
        )
        assert learned[-1] == teacher_tokenizer.eos_token_id


def _uld_trainer(tmp_path, tokenizer, teacher_tokenizer, pairs, **settings):
    """A ULD trainer on tiny Llamas, the batch of `pairs`, its teacher re-tokenization and both models' logits."""
    teacher = tiny_llama(vocab_size=len(teacher_tokenizer), layers=3, seed=1)
    student = tiny_llama(seed=2)
    args = config(tmp_path, divergence="uld", temperature=1.0, **settings)
    trainer = CLMTrainer(
        model=student, args=args, train_dataset=pairs, processing_class=tokenizer, teacher_model=teacher,
        teacher_processing_class=teacher_tokenizer,
    )  # fmt: skip
    batch = collate(pairs)
    other = retokenize_batch(batch, tokenizer, teacher_tokenizer, PAD)
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        t = teacher(input_ids=other["input_ids"], attention_mask=other["attention_mask"]).logits[:, :-1]
    return trainer, batch, other, s, t


def test_uld_trainer_distils_from_a_teacher_of_another_vocabulary(
    tmp_path, tokenizer, teacher_tokenizer, pairs
):
    trainer, batch, other, s, t = _uld_trainer(
        tmp_path, tokenizer, teacher_tokenizer, pairs, alpha=0.6, learning_rate=1e-3
    )
    student, teacher = trainer.model, trainer.teacher_model
    targets = batch["labels"][:, 1:]
    soft = uld_loss(s, t, targets != -100, other["learned"][:, 1:])
    ce = F.cross_entropy(s[targets != -100], targets[targets != -100])
    student.train()
    loss = trainer.compute_loss(student, batch)
    assert loss.item() == pytest.approx((0.6 * soft + 0.4 * ce).item(), rel=1e-5)
    assert soft.item() > 0

    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer.train()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)


def test_uld_needs_both_tokenizers_and_refuses_what_it_cannot_do(
    tmp_path, tokenizer, teacher_tokenizer, pairs
):
    teacher = tiny_llama(vocab_size=len(teacher_tokenizer), seed=1)
    with pytest.raises(UserInputError, match="teacher_processing_class"):
        CLMTrainer(
            model=tiny_llama(seed=2), args=config(tmp_path, divergence="uld"), train_dataset=pairs,
            processing_class=tokenizer, teacher_model=teacher,
        )  # fmt: skip
    with pytest.raises(UserInputError, match="'uld'"):
        config(tmp_path, divergence="uld", lmbda=0.5)
    with pytest.raises(UserInputError, match="uld_top_k=8 applies to divergence 'uld' only"):
        config(tmp_path, uld_top_k=8)
    with pytest.raises(UserInputError, match="must be >= 1"):
        config(tmp_path, divergence="uld", uld_top_k=0)
    # Without uld a teacher of another vocabulary is refused, with uld named nowhere needed: the old check.
    with pytest.raises(UserInputError, match="vocabulary sizes differ"):
        CLMTrainer(
            model=tiny_llama(seed=2), args=config(tmp_path), train_dataset=pairs, processing_class=tokenizer,
            teacher_model=teacher, teacher_processing_class=teacher_tokenizer,
        )  # fmt: skip


def test_uld_top_k_reaches_the_loss(tmp_path, tokenizer, teacher_tokenizer, pairs):
    trainer, batch, other, s, t = _uld_trainer(
        tmp_path, tokenizer, teacher_tokenizer, pairs, alpha=1.0, uld_top_k=3
    )
    student = trainer.model
    masks = (batch["labels"][:, 1:] != -100, other["learned"][:, 1:])
    top3, exact = uld_loss(s, t, *masks, top_k=3), uld_loss(s, t, *masks)
    assert top3.item() != pytest.approx(exact.item(), rel=1e-4)  # k = 3 is an approximation here
    student.train()
    assert trainer.compute_loss(student, batch).item() == pytest.approx(top3.item(), rel=1e-5)
