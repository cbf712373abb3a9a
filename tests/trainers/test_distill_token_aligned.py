"""Layer transfer across tokenizers that cut text into the same pieces under other ids (MPNet -> MiniLM)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    MPNetTokenizerFast,
)

from hfkit.data.token_alignment import check_same_pieces, texts_of_rows, token_id_map
from hfkit.errors import UserInputError
from hfkit.trainers.distill_config import DistillConfig
from hfkit.trainers.distill_trainer import DistillTrainer
from tests.conftest import WORDS, tiny_bert_config, toy_texts

# The teacher's vocabulary: MPNet's special tokens, the same word pieces in the reverse order (so every id differs).
TEACHER_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def mpnet_tokenizer(words: list[str]) -> MPNetTokenizerFast:
    """An MPNet (RoBERTa-style specials) WordPiece tokenizer over `words`."""
    return MPNetTokenizerFast(vocab={t: i for i, t in enumerate(TEACHER_SPECIAL + words)}, do_lower_case=True)


@pytest.fixture(scope="module")
def teacher_tokenizer() -> MPNetTokenizerFast:
    return mpnet_tokenizer(list(reversed(WORDS)))


def mpnet_teacher(tokenizer, seed: int = 0) -> MPNetForSequenceClassification:
    torch.manual_seed(seed)
    config = MPNetConfig(
        vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=96, max_position_embeddings=80, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id,
        id2label={0: "bad", 1: "good"}, label2id={"bad": 0, "good": 1},
    )  # fmt: skip
    return MPNetForSequenceClassification(config).eval()


def tokenized(tokenizer, n: int = 64, seed: int = 0) -> Dataset:
    texts, labels = toy_texts(n, seed)
    return Dataset.from_dict({"text": texts, "labels": labels}).map(
        lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"]
    )


def test_the_map_translates_student_ids_into_the_teachers_own_tokenization(tiny_tokenizer, teacher_tokenizer):
    mapping = token_id_map(tiny_tokenizer, teacher_tokenizer)
    texts, _ = toy_texts(20, seed=3)
    for text in texts:
        student_ids = torch.tensor(tiny_tokenizer(text)["input_ids"])
        assert mapping[student_ids].tolist() == teacher_tokenizer(text)["input_ids"]
    assert student_ids.tolist() != teacher_tokenizer(texts[-1])["input_ids"]  # the ids really differ
    # Special tokens by role: [CLS] -> <s>, [SEP] -> </s>, [PAD] -> <pad>, [MASK] -> <mask>.
    for role in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id"):
        assert mapping[getattr(tiny_tokenizer, role)] == getattr(teacher_tokenizer, role)
    check_same_pieces(tiny_tokenizer, teacher_tokenizer, texts)  # nothing to refuse
    rows = tokenized(tiny_tokenizer, 5)["input_ids"]
    assert texts_of_rows(tiny_tokenizer, rows) == toy_texts(5, 0)[0]


def test_a_teacher_that_cuts_text_otherwise_is_refused_naming_the_row(tiny_tokenizer):
    # This teacher lacks the piece 'w3' and spells it 'w' + '##3': positions would no longer line up.
    other = mpnet_tokenizer([w for w in WORDS if w != "w3"] + ["w", "##3"])
    texts = ["good w1 w2", "bad w3 w4"]
    with pytest.raises(
        UserInputError, match=r"row 1 \('bad w3 w4'\) differs at piece 2: student \['w3'"
    ) as err:
        check_same_pieces(tiny_tokenizer, other, texts)
    assert "teacher ['w', '##3'" in str(err.value)
    # The trainer runs that check on its training rows before any step.
    student = BertForSequenceClassification(tiny_bert_config(tiny_tokenizer, id2label={0: "bad", 1: "good"}))
    data = Dataset.from_dict({"text": texts, "labels": [1, 0]}).map(
        lambda b: tiny_tokenizer(b["text"]), batched=True, remove_columns=["text"]
    )
    args = DistillConfig(
        output_dir="unused", use_cpu=True, report_to="none", hidden_loss_weight=1.0, max_steps=1
    )
    with pytest.raises(UserInputError, match=r"row 1 \('bad w3 w4'\)"):
        DistillTrainer(model=student, teacher_model=mpnet_teacher(other), args=args, train_dataset=data,
                       processing_class=tiny_tokenizer, teacher_processing_class=other)  # fmt: skip
    # Without the teacher's tokenizer the vocabularies are compared by config, as before: refused.
    with pytest.raises(UserInputError, match="Pass both tokenizers"):
        DistillTrainer(model=student, teacher_model=mpnet_teacher(other), args=args, train_dataset=data,
                       processing_class=tiny_tokenizer)  # fmt: skip


def test_hidden_and_attention_transfer_from_an_mpnet_teacher_of_other_ids(
    tmp_path, tiny_tokenizer, teacher_tokenizer
):
    teacher = mpnet_teacher(teacher_tokenizer)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(1)
    student = BertForSequenceClassification(tiny_bert_config(tiny_tokenizer, id2label={0: "bad", 1: "good"}))
    args = DistillConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", disable_tqdm=True, learning_rate=3e-3,
        per_device_train_batch_size=16, max_steps=40, logging_steps=5, eval_strategy="no", save_strategy="no",
        hidden_loss_weight=1.0, attention_loss_weight=1.0, layer_map="uniform", seed=0, plot_curves=False,
    )  # fmt: skip
    trainer = DistillTrainer(model=student, teacher_model=teacher, args=args, train_dataset=tokenized(tiny_tokenizer),
                             processing_class=tiny_tokenizer, teacher_processing_class=teacher_tokenizer)  # fmt: skip
    assert trainer.teacher_token_map is not None

    # What the teacher sees in training is exactly its own tokenization of the text.
    seen = []
    hook = teacher.mpnet.embeddings.register_forward_hook(
        lambda m, a, kw, out: seen.append(kw["input_ids"].clone()), with_kwargs=True
    )
    trainer.train()
    hook.remove()
    assert seen, "the teacher never ran"
    first = seen[0]
    for row in first:
        ids = [i for i in row.tolist() if i != teacher_tokenizer.pad_token_id]
        text = teacher_tokenizer.decode(ids, skip_special_tokens=True)
        assert ids == teacher_tokenizer(text)["input_ids"]

    hidden = [h["loss_hidden"] for h in trainer.state.log_history if "loss_hidden" in h]
    attention = [h["loss_attention"] for h in trainer.state.log_history if "loss_attention" in h]
    assert hidden[-1] < 0.5 * hidden[0]  # the student's projected states move towards the teacher's
    assert attention[-1] < attention[0]
    for key, value in teacher.state_dict().items():  # the teacher is frozen
        assert torch.equal(value, before[key]), key
