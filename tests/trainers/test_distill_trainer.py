"""Tests for DistillTrainer / DistillConfig on tiny random BERT classifiers (CPU, a few steps each)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from safetensors import safe_open
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    BertTokenizerFast,
    DataCollatorWithPadding,
)

from hfkit.student import student_from_teacher
from hfkit.trainers.classifier_config import ClassifierConfig
from hfkit.trainers.classifier_trainer import ClassifierTrainer
from hfkit.trainers.distill_config import DistillConfig
from hfkit.trainers.distill_trainer import PROJECTIONS_FILE, PROJECTIONS_NAME, DistillTrainer
from tests.conftest import tiny_bert_config

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(5, 100)]
CLS, SEP, SIGNAL = 2, 3, 5  # label = whether token 5 occurs


# ---- fixtures and builders -------------------------------------------------------------------------------


# Tiny models: one thread is faster than several and is not slowed down by other jobs (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def _write_tokenizer(folder, vocab: list[str]) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    return _write_tokenizer(tmp_path_factory.mktemp("tokenizer"), VOCAB)


def bert(num_layers=4, hidden=32, heads=2, num_labels=2, vocab_size=100, seed=0, **kwargs):
    """A tiny random BERT classifier; dropout off so a training forward can be recomputed exactly."""
    torch.manual_seed(seed)
    config = tiny_bert_config(
        vocab_size=vocab_size, hidden=hidden, layers=num_layers, num_attention_heads=heads,
        max_position_embeddings=32, num_labels=num_labels, **kwargs,
    )  # fmt: skip
    return BertForSequenceClassification(config)


@pytest.fixture
def teacher() -> BertForSequenceClassification:
    # Function-scoped: the trainer switches a teacher to eager attention when the attention loss is on.
    return bert(num_layers=4, hidden=32, seed=0)


def toy_dataset(n: int, seed: int = 0, unlabelled: tuple[int, ...] = ()) -> Dataset:
    """Sequences of 3..12 tokens with [CLS]/[SEP]; label 1 iff token 5 occurs (half of the rows)."""
    rng = random.Random(seed)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for i in range(n):
        tokens = [rng.randrange(6, 100) for _ in range(rng.randint(3, 12))]
        label = i % 2
        if label:
            tokens[rng.randrange(len(tokens))] = SIGNAL
        ids = [CLS, *tokens, SEP]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(-100 if i in unlabelled else label)
    return Dataset.from_dict(rows)


def distill_config(tmp_path, **overrides) -> DistillConfig:
    values = {
        "output_dir": str(tmp_path),
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 32,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "warmup_steps": 0,
        "seed": 0,
        "data_seed": 0,
    }
    values.update(overrides)
    return DistillConfig(**values)


def full_batch(dataset: Dataset, tokenizer) -> dict[str, torch.Tensor]:
    return DataCollatorWithPadding(tokenizer)([dataset[i] for i in range(len(dataset))])


def first_log(trainer) -> dict:
    return next(entry for entry in trainer.state.log_history if "loss" in entry)


def manual_distillation_loss(
    student, teacher, batch, alpha, temperature, class_weights=None, label_smoothing=0.0
) -> tuple[float, float, float]:
    """alpha * T^2 * KL + (1 - alpha) * CE, written out with torch ops only (not hfkit.losses)."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s = student(**inputs).logits
        t = teacher(**inputs).logits
    soft = F.kl_div(
        F.log_softmax(s / temperature, -1),
        F.log_softmax(t / temperature, -1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    weight = None if class_weights is None else torch.tensor(class_weights)
    hard = F.cross_entropy(
        s, batch["labels"], weight=weight, ignore_index=-100, label_smoothing=label_smoothing
    )
    return (alpha * soft + (1 - alpha) * hard).item(), soft.item(), hard.item()


# ---- loss ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hard_options",
    [{}, {"class_weights": [1.0, 3.0], "label_smoothing_factor": 0.1}],
    ids=["plain", "weighted"],
)
def test_training_loss_is_alpha_soft_plus_one_minus_alpha_hard(tmp_path, teacher, tokenizer, hard_options):
    # One batch holding the whole dataset, so the first logged loss is the loss of a known batch.
    dataset = toy_dataset(8, unlabelled=(3,))  # a row without gold label: soft term only
    student = student_from_teacher(teacher, [0, 3])
    expected, soft, hard = manual_distillation_loss(
        student,
        teacher,
        full_batch(dataset, tokenizer),
        alpha=0.3,
        temperature=3.0,
        class_weights=hard_options.get("class_weights"),
        label_smoothing=hard_options.get("label_smoothing_factor", 0.0),
    )
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher,
        args=distill_config(tmp_path, max_steps=1, alpha=0.3, temperature=3.0, **hard_options),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    log = first_log(trainer)
    assert log["loss"] == pytest.approx(expected, rel=1e-5)
    assert log["loss_soft"] == pytest.approx(soft, rel=1e-5)
    assert log["loss_hard"] == pytest.approx(hard, rel=1e-5)
    assert "loss_hidden" not in log and "loss_attention" not in log


def test_batch_without_gold_labels_gets_the_soft_loss_only(tmp_path, teacher, tokenizer):
    trainer = DistillTrainer(
        model=student_from_teacher(teacher, [0, 3]),
        teacher_model=teacher,
        args=distill_config(tmp_path, max_steps=1, alpha=0.3),
        train_dataset=toy_dataset(8, unlabelled=tuple(range(8))),
        processing_class=tokenizer,
    )
    trainer.train()
    log = first_log(trainer)
    assert log["loss"] == pytest.approx(log["loss_soft"], rel=1e-6)  # soft alone, not 0.3 * soft
    assert "loss_hard" not in log  # no labelled row in the interval: nothing to average


def test_student_identical_to_teacher_has_zero_distillation_losses(tmp_path, teacher, tokenizer):
    # Checks the wiring of layer maps, masks and attention maps: an exact copy must match at every layer.
    trainer = DistillTrainer(
        model=student_from_teacher(teacher, range(4)),
        teacher_model=teacher,
        args=distill_config(
            tmp_path,
            max_steps=1,
            hidden_loss_weight=1.0,
            attention_loss_weight=1.0,
            attention_loss_type="mse",
        ),
        train_dataset=toy_dataset(8),
        processing_class=tokenizer,
    )
    assert trainer.hidden_layer_map == [(i, i) for i in range(5)]
    trainer.train()
    log = first_log(trainer)
    for name in ("loss_soft", "loss_hidden", "loss_attention"):
        assert log[name] == pytest.approx(0.0, abs=1e-6), name


def test_all_losses_logged_and_summed(tmp_path, teacher, tokenizer):
    student = student_from_teacher(teacher, [1, 3])
    args = distill_config(
        tmp_path,
        max_steps=2,
        per_device_train_batch_size=4,
        logging_steps=2,
        alpha=0.7,
        hidden_loss_weight=0.5,
        hidden_loss_type="cosine",
        attention_loss_weight=2.0,
        attention_loss_type="kl",
        layer_map="0:0,2:1,4:2",
    )
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=toy_dataset(8),
        processing_class=tokenizer,
    )
    # Attention maps only exist under eager attention (SDPA returns none).
    assert student.config._attn_implementation == "eager"
    assert trainer.attention_layer_map == [(1, 0), (3, 1)]
    assert not hasattr(student, PROJECTIONS_NAME)  # equal widths: nothing to learn
    trainer.train()
    log = first_log(trainer)
    for name in ("loss_soft", "loss_hard", "loss_hidden", "loss_attention"):
        assert np.isfinite(log[name]) and log[name] > 0, name
    # Every component is averaged over the same interval as "loss", so the weighted sum must match it.
    total = (
        0.7 * log["loss_soft"]
        + 0.3 * log["loss_hard"]
        + 0.5 * log["loss_hidden"]
        + 2.0 * log["loss_attention"]
    )
    assert log["loss"] == pytest.approx(total, rel=1e-5)
    trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final" / PROJECTIONS_FILE).exists()


def test_eval_loss_is_plain_student_cross_entropy(tmp_path, teacher, tokenizer):
    student = student_from_teacher(teacher, [0, 2])
    eval_dataset = toy_dataset(12, seed=1)
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher,
        args=distill_config(tmp_path),
        train_dataset=toy_dataset(8),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
    )
    metrics = trainer.evaluate()
    batch = full_batch(eval_dataset, tokenizer)
    with torch.no_grad():
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert metrics["eval_loss"] == pytest.approx(F.cross_entropy(logits, batch["labels"]).item(), rel=1e-5)
    accuracy = (logits.argmax(-1) == batch["labels"]).float().mean().item()
    assert metrics["eval_accuracy"] == pytest.approx(accuracy)
    assert not any(key.startswith("eval_loss_") for key in metrics)


# ---- teacher handling, checkpoints, resume -------------------------------------------------------------


def test_teacher_frozen_and_checkpoint_holds_only_the_student(tmp_path, teacher, tokenizer):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = bert(num_layers=2, hidden=16, seed=1)  # narrower than the teacher: projections are learned
    args = distill_config(
        tmp_path,
        max_steps=2,
        save_strategy="steps",
        save_steps=2,
        hidden_loss_weight=1.0,
        layer_map="uniform",
    )
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=toy_dataset(16),
        processing_class=tokenizer,
    )
    projections = getattr(student, PROJECTIONS_NAME)
    initial_projection = projections[0].weight.detach().clone()
    assert trainer.hidden_layer_map == [(0, 0), (2, 1), (4, 2)]
    assert len(projections) == 3 and projections[0].weight.shape == (32, 16)
    trainer.train()

    # The teacher: unchanged, frozen, no gradients, not part of the student.
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(module is not teacher for module in student.modules())
    # The projections were trained with the student.
    assert not torch.equal(projections[0].weight, initial_projection)
    assert "loss_hidden" in first_log(trainer)

    checkpoint = tmp_path / "checkpoint-2"
    with safe_open(checkpoint / "model.safetensors", "pt") as f:
        saved = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    student_state = {k: v for k, v in student.state_dict().items() if not k.startswith(PROJECTIONS_NAME)}
    assert set(saved) == set(student_state)  # no projection keys, no teacher (4-layer, width 32) keys
    for key, value in saved.items():
        assert value.shape == student_state[key].shape, key
    with safe_open(checkpoint / PROJECTIONS_FILE, "pt") as f:
        assert set(f.keys()) == {f"{i}.{p}" for i in range(3) for p in ("weight", "bias")}

    reloaded, info = AutoModelForSequenceClassification.from_pretrained(checkpoint, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = full_batch(toy_dataset(6, seed=2), tokenizer)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**inputs).logits, student(**inputs).logits)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, teacher, tokenizer):
    dataset = toy_dataset(16)

    def make_trainer(output_dir, student_seed):
        args = distill_config(
            output_dir,
            max_steps=4,
            per_device_train_batch_size=4,
            save_strategy="steps",
            save_steps=2,
            hidden_loss_weight=1.0,
            warmup_steps=1,
        )
        student = bert(num_layers=2, hidden=16, seed=student_seed)
        return DistillTrainer(
            model=student, teacher_model=teacher, args=args, train_dataset=dataset, processing_class=tokenizer
        )

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        full = make_trainer(tmp_path / "full", student_seed=1)
        full.train()
        resumed = make_trainer(tmp_path / "resumed", student_seed=7)  # other weights: all must come from disk
        with torch.no_grad():
            getattr(resumed.model, PROJECTIONS_NAME)[0].weight.zero_()  # must be restored from the checkpoint
        resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    finally:
        torch.use_deterministic_algorithms(deterministic)

    assert resumed.state.global_step == 4
    expected = full.model.state_dict()
    actual = resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, msg=key)


# ---- cached teacher logits -------------------------------------------------------------------------------


def _with_teacher_logits(dataset: Dataset, teacher) -> Dataset:
    logits = []
    with torch.no_grad():
        for row in dataset:
            logits.append(teacher(input_ids=torch.tensor([row["input_ids"]])).logits[0].tolist())
    return dataset.add_column("teacher_logits", logits)


def test_cached_teacher_logits_give_the_online_teacher_loss(tmp_path, teacher, tokenizer):
    dataset = toy_dataset(8)
    cached = _with_teacher_logits(dataset, teacher)

    def first_loss(output_dir, teacher_model, train_dataset):
        student = student_from_teacher(teacher, [0, 3])
        trainer = DistillTrainer(
            model=student,
            teacher_model=teacher_model,
            args=distill_config(output_dir, max_steps=1),
            train_dataset=train_dataset,
            processing_class=tokenizer,
        )
        trainer.train()
        return first_log(trainer)

    online = first_loss(tmp_path / "online", teacher, dataset)
    offline = first_loss(tmp_path / "cached", None, cached)
    # Cached rows were computed unpadded, online ones in a padded batch: equal up to float noise.
    for key in ("loss", "loss_soft", "loss_hard"):
        assert offline[key] == pytest.approx(online[key], rel=1e-4), key


def test_cached_logits_are_used_instead_of_running_the_teacher(tmp_path, teacher, tokenizer):
    calls = []
    handle = teacher.register_forward_hook(lambda *_: calls.append(1))
    cached = _with_teacher_logits(toy_dataset(8), teacher)
    calls.clear()
    try:
        trainer = DistillTrainer(
            model=student_from_teacher(teacher, [0, 1]),
            teacher_model=teacher,
            args=distill_config(tmp_path, max_steps=2),
            train_dataset=cached,
            processing_class=tokenizer,
        )
        trainer.train()
    finally:
        handle.remove()
    assert calls == []
    assert "loss_soft" in first_log(trainer)


# ---- checks before training ------------------------------------------------------------------------------


def test_label_set_mismatch(tmp_path, teacher, tokenizer):
    with pytest.raises(ValueError, match="label sets differ.*Fine-tune the teacher"):
        DistillTrainer(
            model=bert(num_layers=2, num_labels=3),
            teacher_model=teacher,
            args=distill_config(tmp_path),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    named = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    swapped = {"id2label": {0: "pos", 1: "neg"}, "label2id": {"pos": 0, "neg": 1}}
    with pytest.raises(ValueError, match="label sets differ"):
        DistillTrainer(
            model=bert(num_layers=2, **swapped),
            teacher_model=bert(num_layers=2, **named),
            args=distill_config(tmp_path),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    cached = toy_dataset(4).add_column("teacher_logits", [[0.0, 1.0, 2.0]] * 4)
    with pytest.raises(ValueError, match="label sets differ"):
        DistillTrainer(model=bert(num_layers=2), args=distill_config(tmp_path), train_dataset=cached)


def test_vocabulary_mismatch_with_hidden_loss(tmp_path, teacher, tokenizer):
    args = distill_config(tmp_path, hidden_loss_weight=1.0)
    with pytest.raises(ValueError, match="tokenizers differ.*vocab_size 100 vs 120.*hidden_loss_weight=0"):
        DistillTrainer(
            model=bert(num_layers=2),
            teacher_model=bert(num_layers=2, vocab_size=120),
            args=args,
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    # The same pieces under other ids: read through the id map (tests/trainers/test_distill_token_aligned.py).
    other = _write_tokenizer(tmp_path / "other", [*VOCAB[:5], *reversed(VOCAB[5:])])
    trainer = DistillTrainer(
        model=student_from_teacher(teacher, [0, 1]),
        teacher_model=teacher,
        args=args,
        train_dataset=toy_dataset(8),
        processing_class=tokenizer,
        teacher_processing_class=other,
    )
    assert trainer.teacher_token_map[SIGNAL] == other.convert_tokens_to_ids("w5") != SIGNAL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"layer_map": "0-0,2:1"}, "layer_map '0-0,2:1': cannot parse '0-0'"),
        ({"layer_map": "0:0,2:1,2:1"}, "twice"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"hidden_loss_weight": -1.0}, "hidden_loss_weight must be >= 0"),
        ({"hidden_loss_type": "l1"}, "hidden_loss_type must be one of"),
        ({"attention_loss_type": "jsd"}, "attention_loss_type must be one of"),
        ({"teacher_logits_dtype": "bf16"}, "teacher_logits_dtype must be one of"),
    ],
)
def test_config_validation(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        distill_config(tmp_path, **overrides)


def test_teacher_logits_dtype_follows_training_precision_unless_set(tmp_path):
    assert distill_config(tmp_path).teacher_autocast_dtype() is None  # float32 training: float32 pass
    assert (
        distill_config(tmp_path, teacher_logits_dtype="bfloat16").teacher_autocast_dtype() is torch.bfloat16
    )
    assert distill_config(tmp_path, teacher_logits_dtype="float32").teacher_autocast_dtype() is None
    auto_bf16 = distill_config(tmp_path, bf16=True, use_cpu=True)
    assert auto_bf16.teacher_autocast_dtype() is torch.bfloat16


def test_layer_map_parsing(tmp_path):
    assert distill_config(tmp_path, layer_map=" 0:0, 4:2 ").layer_pairs == [(0, 0), (4, 2)]
    assert distill_config(tmp_path).layer_pairs is None  # uniform, resolved from the layer counts


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_loss_weight": 1.0, "layer_map": "0:0,5:1"}, r"pairs \[\(5, 1\)\] are out of range.*0\.\.4"),
        ({"hidden_loss_weight": 1.0, "layer_map": "4:3"}, "out of range"),
        ({"attention_loss_weight": 1.0, "layer_map": "0:1,4:2"}, "cannot be used for the attention loss"),
        ({"attention_loss_weight": 1.0, "layer_map": "0:0"}, "no transformer-layer pair"),
    ],
)
def test_invalid_layer_map_for_the_models(tmp_path, teacher, tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        DistillTrainer(
            model=student_from_teacher(teacher, [0, 1]),
            teacher_model=teacher,
            args=distill_config(tmp_path, **overrides),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )


def test_needs_a_teacher_or_cached_logits(tmp_path, teacher, tokenizer):
    with pytest.raises(ValueError, match="no teacher.*teacher_logits"):
        DistillTrainer(
            model=bert(num_layers=2),
            args=distill_config(tmp_path),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    cached = _with_teacher_logits(toy_dataset(4), teacher)
    with pytest.raises(ValueError, match="cached teacher_logits do not hold"):
        DistillTrainer(
            model=bert(num_layers=2),
            args=distill_config(tmp_path, hidden_loss_weight=1.0),
            train_dataset=cached,
            processing_class=tokenizer,
        )
    with pytest.raises(TypeError, match="DistillConfig"):
        DistillTrainer(
            model=bert(num_layers=2), teacher_model=teacher, args=ClassifierConfig(output_dir=str(tmp_path))
        )


def test_teacher_from_a_path(tmp_path, teacher, tokenizer):
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    trainer = DistillTrainer(
        model=student_from_teacher(teacher, [0, 1]),
        teacher_model=str(tmp_path / "teacher"),
        args=distill_config(tmp_path / "out", max_steps=1),
        train_dataset=toy_dataset(8),
        processing_class=tokenizer,
    )
    assert trainer.teacher_processing_class is not None  # loaded from the folder for the vocabulary check
    assert not trainer.teacher_model.training
    assert all(not p.requires_grad for p in trainer.teacher_model.parameters())
    trainer.train()


# ---- end to end: a learnable toy task ------------------------------------------------------------------


def test_distilled_student_learns_the_toy_task(tmp_path, tokenizer):
    # Teacher fine-tuned on the task, then a randomly initialised student trained on the teacher's soft
    # targets alone (alpha=1): all it knows about the task has to come through the distillation loss.
    train, test = toy_dataset(384, seed=10), toy_dataset(128, seed=11)
    common = {
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 128,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 10,
        "learning_rate": 3e-3,
        "warmup_steps": 0.1,
        "seed": 0,
        "data_seed": 0,
    }
    teacher = bert(num_layers=2, hidden=32, seed=3)
    teacher_trainer = ClassifierTrainer(
        model=teacher,
        args=ClassifierConfig(output_dir=str(tmp_path / "teacher"), num_train_epochs=8, **common),
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
    )
    teacher_trainer.train()
    assert teacher_trainer.evaluate()["eval_accuracy"] > 0.9

    student = bert(num_layers=1, hidden=16, seed=4)  # random init: everything it knows comes from training
    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher,
        args=DistillConfig(output_dir=str(tmp_path / "student"), num_train_epochs=8, alpha=1.0, **common),
        train_dataset=train,
        eval_dataset=test,
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.report is not None
    assert trainer.report["metrics"]["accuracy"] > 0.8
