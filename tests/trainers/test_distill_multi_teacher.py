"""DistillTrainer with several teachers, on tiny random BERT classifiers: combined soft targets, per-teacher
loss components, online / cached / mixed teachers, and the checks every teacher gets."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hfkit.errors import UserInputError
from hfkit.student import student_from_teacher
from hfkit.trainers.distill_trainer import DistillTrainer
from tests.trainers.test_distill_trainer import (
    VOCAB,
    _write_tokenizer,
    bert,
    distill_config,
    first_log,
    full_batch,
    toy_dataset,
)

RULES = {"mean": {}, "weighted": {"teacher_weights": [1.0, 3.0]}, "confidence": {}, "gold": {}}


# Tiny models: one thread is faster than several and is not slowed down by other jobs (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return _write_tokenizer(tmp_path_factory.mktemp("tokenizer"), VOCAB)


def confident(model):
    """The model with a 30x larger classifier: a random tiny BERT's logits are near 0, which makes every KL ~0."""
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    return model


def new_student():
    """A 2-layer random student, independent of the teachers (so every KL term is far from 0)."""
    return bert(num_layers=2, hidden=32, seed=7)


@pytest.fixture
def teachers():
    """Two teachers of different shapes (4 x 32 and 2 x 48) on the same labels and vocabulary."""
    return confident(bert(num_layers=4, hidden=32, seed=0)), confident(
        bert(num_layers=2, hidden=48, heads=4, seed=1)
    )


def logits_of(model, dataset) -> list[list[float]]:
    """One row of logits per example, each computed alone (as a cache would hold them)."""
    with torch.no_grad():
        return [model(input_ids=torch.tensor([row["input_ids"]])).logits[0].tolist() for row in dataset]


def train_one_step(tmp_path, student, teacher_model, dataset, tokenizer, **config):
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher_model,
        args=distill_config(tmp_path, max_steps=1, alpha=0.4, temperature=2.0, **config),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer, first_log(trainer)


@pytest.mark.parametrize("rule", list(RULES))
def test_two_identical_teachers_give_the_one_teacher_loss(tmp_path, teachers, tokenizer, rule):
    teacher = teachers[0]
    dataset = toy_dataset(8, unlabelled=(2,))
    student = new_student()
    _, one = train_one_step(tmp_path / "one", copy.deepcopy(student), teacher, dataset, tokenizer)
    options = {"teacher_combination": rule, **RULES[rule]}
    pair = [teacher, copy.deepcopy(teacher)]
    trainer, two = train_one_step(tmp_path / "two", student, pair, dataset, tokenizer, **options)
    assert len(trainer.teacher_models) == 2 and trainer.teacher_model is None
    for key in ("loss", "loss_soft", "loss_hard"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key
    # Each teacher's own KL is logged; both equal the one teacher's.
    assert two["loss_soft_teacher0"] == pytest.approx(one["loss_soft"], rel=1e-5)
    assert two["loss_soft_teacher1"] == pytest.approx(one["loss_soft"], rel=1e-5)
    assert "loss_soft_teacher0" not in one


def manual_pair_loss(
    student, teachers, batch, alpha, temperature, weights
) -> tuple[float, float, list[float]]:
    """alpha * T^2 KL(sum_k w_k softmax(t_k / T) || softmax(s / T)) + (1 - alpha) CE, in plain torch ops."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s = student(**inputs).logits
        ts = [t(**inputs).logits for t in teachers]
    log_s = F.log_softmax(s / temperature, -1)
    target = sum(w * F.softmax(t / temperature, -1) for w, t in zip(weights, ts, strict=True))
    soft = F.kl_div(log_s, target, reduction="batchmean") * temperature**2
    hard = F.cross_entropy(s, batch["labels"])
    per_teacher = [
        (F.kl_div(log_s, F.softmax(t / temperature, -1), reduction="batchmean") * temperature**2).item()
        for t in ts
    ]
    return (alpha * soft + (1 - alpha) * hard).item(), soft.item(), per_teacher


@pytest.mark.parametrize("source", ["online", "cached", "mixed"])
def test_two_teachers_weighted_hand_loss_from_any_source(tmp_path, teachers, tokenizer, source):
    dataset = toy_dataset(8)
    student = new_student()
    expected, soft, per_teacher = manual_pair_loss(
        student, teachers, full_batch(dataset, tokenizer), 0.4, 2.0, weights=[0.25, 0.75]
    )
    if source == "online":
        teacher_model = list(teachers)
    elif source == "cached":  # teacher_model=None and a (2, C) column: two cached teachers
        rows = zip(logits_of(teachers[0], dataset), logits_of(teachers[1], dataset), strict=True)
        dataset = dataset.add_column("teacher_logits", [list(r) for r in rows])
        teacher_model = None
    else:  # teacher 0 online, teacher 1 cached in a (C,) column
        dataset = dataset.add_column("teacher_logits", logits_of(teachers[1], dataset))
        teacher_model = [teachers[0], None]
    trainer, log = train_one_step(
        tmp_path, student, teacher_model, dataset, tokenizer,
        teacher_combination="weighted", teacher_weights=[1.0, 3.0],
    )  # fmt: skip
    expected_plan = {
        "online": [("online", 0), ("online", 1)],
        "cached": [("cached", 0), ("cached", 1)],
        "mixed": [("online", 0), ("cached", 0)],
    }[source]
    assert trainer.teacher_plan == expected_plan
    # Cached rows were computed unpadded, online ones in a padded batch: equal up to float noise.
    assert log["loss"] == pytest.approx(expected, rel=1e-4)
    assert log["loss_soft"] == pytest.approx(soft, rel=1e-4)
    assert [log["loss_soft_teacher0"], log["loss_soft_teacher1"]] == pytest.approx(per_teacher, rel=1e-4)
    assert per_teacher[0] != pytest.approx(per_teacher[1], rel=1e-2)  # the teachers differ: the test can fail


def test_every_teacher_gets_the_label_check(tmp_path, teachers, tokenizer):
    three = bert(num_layers=2, num_labels=3, seed=2)
    student = student_from_teacher(teachers[0], [0, 1])
    with pytest.raises(
        UserInputError, match="label sets differ: teacher has 3 labels.*Fine-tune the teacher"
    ):
        DistillTrainer(
            model=student,
            teacher_model=[teachers[0], three],
            args=distill_config(tmp_path),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    named = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    swapped = {"id2label": {0: "pos", 1: "neg"}, "label2id": {"pos": 0, "neg": 1}}
    with pytest.raises(UserInputError, match="label sets differ"):
        DistillTrainer(
            model=bert(num_layers=2, **named),
            teacher_model=[bert(num_layers=2, **named), bert(num_layers=2, **swapped)],
            args=distill_config(tmp_path),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    cached = toy_dataset(4).add_column("teacher_logits", [[[0.0, 1.0, 2.0]] * 2] * 4)
    with pytest.raises(UserInputError, match="label sets differ.*3 values per row"):
        DistillTrainer(model=student, args=distill_config(tmp_path), train_dataset=cached)


def test_teacher_weights_must_match_the_teachers(tmp_path, teachers, tokenizer):
    student = student_from_teacher(teachers[0], [0, 1])
    args = distill_config(tmp_path, teacher_combination="weighted", teacher_weights=[1.0, 2.0, 3.0])
    with pytest.raises(UserInputError, match="3 values for 2 teachers: give exactly one weight per teacher"):
        DistillTrainer(
            model=student, teacher_model=list(teachers), args=args, train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )  # fmt: skip
    cached = toy_dataset(4).add_column("teacher_logits", [[[0.0, 1.0]] * 2] * 4)
    with pytest.raises(UserInputError, match="3 values for 2 teachers"):
        DistillTrainer(model=student, args=args, train_dataset=cached)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"teacher_combination": "max"}, "teacher_combination must be one of"),
        ({"teacher_combination": "weighted"}, "'weighted' needs teacher_weights"),
        ({"teacher_weights": [1.0, 2.0]}, "only used by teacher_combination 'weighted'"),
        ({"teacher_combination": "weighted", "teacher_weights": [1.0, -1.0]}, "must be >= 0"),
        ({"teacher_combination": "weighted", "teacher_weights": [0.0, 0.0]}, "positive sum"),
    ],
)
def test_combination_settings_are_checked(tmp_path, overrides, message):
    with pytest.raises(UserInputError, match=message):
        distill_config(tmp_path, **overrides)


def test_several_teachers_refuse_layer_losses_and_unmatched_columns(tmp_path, teachers, tokenizer):
    student = student_from_teacher(teachers[0], [0, 1])
    for weight in ("hidden_loss_weight", "attention_loss_weight"):
        with pytest.raises(UserInputError, match="transfer one teacher's layers, but 2 teachers.*=0"):
            DistillTrainer(
                model=student, teacher_model=list(teachers), args=distill_config(tmp_path, **{weight: 1.0}),
                train_dataset=toy_dataset(8), processing_class=tokenizer,
            )  # fmt: skip
    with pytest.raises(UserInputError, match="as None.*train_dataset has none"):
        DistillTrainer(
            model=student, teacher_model=[teachers[0], None], args=distill_config(tmp_path),
            train_dataset=toy_dataset(8), processing_class=tokenizer,
        )  # fmt: skip
    three_rows = toy_dataset(4).add_column("teacher_logits", [[[0.0, 1.0]] * 3] * 4)
    with pytest.raises(UserInputError, match="holds 3 teacher.*2 teachers, 1 of them None"):
        DistillTrainer(
            model=student, teacher_model=[teachers[0], None], args=distill_config(tmp_path),
            train_dataset=three_rows, processing_class=tokenizer,
        )  # fmt: skip


def test_online_teacher_with_another_vocabulary_is_refused(tmp_path, teachers, tokenizer):
    other_vocab = VOCAB[:5] + list(reversed(VOCAB[5:]))
    other = _write_tokenizer(tmp_path / "other", other_vocab)
    student = student_from_teacher(teachers[0], [0, 1])
    with pytest.raises(
        UserInputError, match="tokenizers differ.*teacher 1 runs on the student's token ids.*None"
    ):
        DistillTrainer(
            model=student, teacher_model=list(teachers), teacher_processing_class=[tokenizer, other],
            args=distill_config(tmp_path), train_dataset=toy_dataset(8), processing_class=tokenizer,
        )  # fmt: skip
    # The same teacher with its logits cached (None in its place) is fine.
    dataset = toy_dataset(8)
    dataset = dataset.add_column("teacher_logits", logits_of(teachers[1], dataset))
    trainer = DistillTrainer(
        model=student, teacher_model=[teachers[0], None], teacher_processing_class=[tokenizer, other],
        args=distill_config(tmp_path), train_dataset=dataset, processing_class=tokenizer,
    )  # fmt: skip
    assert trainer.teacher_plan == [("online", 0), ("cached", 0)]
