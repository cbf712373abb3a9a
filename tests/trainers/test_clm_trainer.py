"""Tests for CLMTrainer / CLMConfig on tiny random Llama models and a word-level tokenizer (CPU, few steps)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig
from safetensors import safe_open

from hfkit.data.lm import LMDataArguments, LMDataCollator, build_lm_dataset
from hfkit.student import student_from_teacher
from hfkit.teacher_cache.lm import add_teacher_topk, teacher_topk_logits
from hfkit.trainers.clm_config import CLMConfig
from hfkit.trainers.clm_trainer import CLMTrainer
from tests.unit.data.test_lm import PAD, tiny_llama, word_tokenizer

VOCAB = 56  # len(word_tokenizer())
SENTENCE = "the cat sat on the mat w1 w2 w3 w4 w5 w6"


# Tiny models: one thread is faster than several and is not slowed down by other jobs (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer()


@pytest.fixture(scope="module")
def blocks(tokenizer) -> Dataset:
    """24 packed blocks of 16 tokens of one repeated sentence: a text a 2-layer model learns in a few steps."""
    docs = Dataset.from_dict({"text": [SENTENCE] * 32})
    return build_lm_dataset(docs, tokenizer, LMDataArguments(train_file="x.txt"), block_size=16)


@pytest.fixture(scope="module")
def pairs(tokenizer) -> Dataset:
    """Prompt/response rows of different lengths (so batches need padding and prompts are masked)."""
    rows = {
        "prompt": ["question w1", "question w2 w3 w4 w5", "question w6 w7", "hello"],
        "response": ["answer w8", "w9", "answer w10 w11 w12", "world the cat"],
    }
    return build_lm_dataset(
        Dataset.from_dict(rows), tokenizer, LMDataArguments(train_file="x.txt"), 32, packing=False
    )


def config(tmp_path, **overrides) -> CLMConfig:
    values = {
        "output_dir": str(tmp_path),
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 2,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "warmup_steps": 0,
        "block_size": 16,
        "seed": 0,
        "data_seed": 0,
    }
    values.update(overrides)
    return CLMConfig(**values)


def collate(dataset: Dataset) -> dict[str, torch.Tensor]:
    return LMDataCollator(pad_token_id=PAD)([dataset[i] for i in range(len(dataset))])


def first_log(trainer) -> dict:
    return next(entry for entry in trainer.state.log_history if "loss" in entry)


# ---- config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"divergence": "kl"}, "divergence must be one of"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"jsd_beta": -0.1}, r"jsd_beta must be in \[0, 1\]"),
        ({"teacher_topk": 0}, "teacher_topk must be >= 1"),
        ({"teacher_logits_cache": "cache"}, "teacher_logits_cache needs teacher_topk"),
        ({"block_size": 1}, "block_size must be >= 2"),
    ],
)
def test_config_rejects_bad_values(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_trainer_needs_clm_config(tmp_path, tokenizer):
    from transformers import TrainingArguments

    with pytest.raises(TypeError, match="args must be a CLMConfig"):
        CLMTrainer(
            model=tiny_llama(), args=TrainingArguments(output_dir=str(tmp_path)), processing_class=tokenizer
        )


# ---- fine-tuning and evaluation --------------------------------------------------------------------------


def test_training_lowers_perplexity_on_repeated_text(tmp_path, tokenizer, blocks):
    trainer = CLMTrainer(
        model=tiny_llama(),
        args=config(tmp_path, max_steps=30),
        train_dataset=blocks,
        eval_dataset=blocks.select(range(4)),
        processing_class=tokenizer,
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert before["eval_perplexity"] > 30  # ~ uniform over 56 tokens at the start
    assert after["eval_perplexity"] < 2.0
    assert after["eval_perplexity"] == pytest.approx(math.exp(after["eval_loss"]))
    assert after["eval_tokens"] == 4 * 15  # 4 blocks of 16 tokens, the first of each never predicted
    logged = first_log(trainer)
    assert "loss_ce" in logged and "loss_kd" not in logged


def test_eval_loss_is_token_weighted_over_padded_batches(tmp_path, tokenizer, pairs):
    model = tiny_llama(seed=3)
    trainer = CLMTrainer(model=model, args=config(tmp_path), eval_dataset=pairs, processing_class=tokenizer)
    metrics = trainer.evaluate()
    nll = count = 0.0
    with torch.no_grad():
        for row in pairs:  # one unpadded row at a time, written out with torch ops only
            ids, labels = torch.tensor([row["input_ids"]]), torch.tensor(row["labels"][1:])
            logits = model(input_ids=ids).logits[0, :-1]
            keep = labels != -100
            nll += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
            count += keep.sum().item()
    assert metrics["eval_tokens"] == count
    assert metrics["eval_loss"] == pytest.approx(nll / count, rel=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)


# ---- distillation ----------------------------------------------------------------------------------------


def manual_loss(student, teacher, batch, alpha, temperature, divergence) -> tuple[float, float, float]:
    """alpha * T^2 * KL + (1 - alpha) * CE over label tokens, with torch ops only (not hfkit.losses)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s = student(**inputs).logits[:, :-1]
        t = teacher(**inputs).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    log_s = F.log_softmax(s[keep] / temperature, -1)
    log_t = F.log_softmax(t[keep] / temperature, -1)
    if divergence == "forward_kl":
        kd = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    else:
        kd = (log_s.exp() * (log_s - log_t)).sum(-1).mean()
    ce = F.cross_entropy(s[keep], labels[keep])
    return (alpha * temperature**2 * kd + (1 - alpha) * ce).item(), kd.item(), ce.item()


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl"])
def test_distillation_loss_matches_hand_computation_and_is_logged(tmp_path, tokenizer, pairs, divergence):
    teacher, student = tiny_llama(layers=3, seed=1), tiny_llama(seed=2)
    args = config(tmp_path, alpha=0.3, temperature=2.0, divergence=divergence, learning_rate=1e-3)
    trainer = CLMTrainer(
        model=student, args=args, train_dataset=pairs, processing_class=tokenizer, teacher_model=teacher
    )
    batch = collate(pairs)
    expected, kd, ce = manual_loss(student, teacher, batch, 0.3, 2.0, divergence)
    student.train()
    loss = trainer.compute_loss(student, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert trainer._loss_parts["kd"][-1][0].item() == pytest.approx(kd, rel=1e-5)
    assert trainer._loss_parts["ce"][-1][0].item() == pytest.approx(ce, rel=1e-5)
    trainer._loss_parts.clear()

    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer.train()
    logged = first_log(trainer)
    assert logged["loss_kd"] > 0 and logged["loss_ce"] > 0
    assert logged["loss"] == pytest.approx(0.3 * 4 * logged["loss_kd"] + 0.7 * logged["loss_ce"], rel=1e-3)
    # The teacher is frozen, in eval mode, and not part of what is saved.
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    trainer.save_model()
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(student.state_dict())


def test_topk_from_cache_equals_online_topk_and_full_vocab_equals_full_logits(tmp_path, tokenizer, pairs):
    teacher = tiny_llama(layers=3, seed=1)

    def divergence_of(train_dataset, teacher_model, **overrides) -> float:
        """The logged distillation term of one compute_loss call on the whole dataset as a batch."""
        student = tiny_llama(seed=2)
        args = config(tmp_path, divergence="jsd", jsd_beta=0.3, temperature=1.5, **overrides)
        trainer = CLMTrainer(
            model=student,
            args=args,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            teacher_model=teacher_model,
        )
        student.train()
        trainer.compute_loss(student, collate(train_dataset))
        return trainer._loss_parts["kd"][-1][0].item()

    cached = add_teacher_topk(
        pairs, teacher_topk_logits(teacher, pairs, k=5, cache_dir=str(tmp_path / "cache"))
    )
    from_cache = divergence_of(cached, None, teacher_topk=5)
    online = divergence_of(pairs, teacher, teacher_topk=5)
    assert from_cache == pytest.approx(online, rel=1e-5)
    full = divergence_of(pairs, teacher)
    assert full != pytest.approx(online, rel=0.05)  # k=5 of 56 really is an approximation
    assert divergence_of(pairs, teacher, teacher_topk=VOCAB) == pytest.approx(full, rel=1e-5)


def test_student_from_teacher_layers_distils(tmp_path, tokenizer, blocks):
    teacher = tiny_llama(layers=4, seed=1)
    student = student_from_teacher(teacher, [0, 3])
    trainer = CLMTrainer(
        model=student,
        args=config(tmp_path, max_steps=3),
        train_dataset=blocks,
        processing_class=tokenizer,
        teacher_model=teacher,
    )
    trainer.train()
    assert trainer.state.global_step == 3 and "loss_kd" in first_log(trainer)


# ---- errors ----------------------------------------------------------------------------------------------


def test_vocabulary_mismatch_is_an_error_up_front(tmp_path, tokenizer, pairs):
    with pytest.raises(
        ValueError, match="vocabulary sizes differ: student has 56 logits per token, teacher 60"
    ):
        CLMTrainer(
            model=tiny_llama(),
            args=config(tmp_path),
            train_dataset=pairs,
            processing_class=tokenizer,
            teacher_model=tiny_llama(vocab_size=60),
        )
    other = word_tokenizer(
        [f"v{i}" for i in range(40)] + ["the", "cat", "sat", "on", "mat", "a", "b", "c", "d"]
    )
    with pytest.raises(ValueError, match="tokenizers differ"):
        CLMTrainer(
            model=tiny_llama(),
            args=config(tmp_path),
            train_dataset=pairs,
            processing_class=tokenizer,
            teacher_model=tiny_llama(seed=1),
            teacher_processing_class=other,
        )


def test_teacher_source_errors(tmp_path, tokenizer, pairs):
    with pytest.raises(ValueError, match="teacher_topk=4 but there is no teacher"):
        CLMTrainer(
            model=tiny_llama(),
            args=config(tmp_path, teacher_topk=4),
            train_dataset=pairs,
            processing_class=tokenizer,
        )
    with pytest.raises(ValueError, match="alpha=0 gives the teacher no weight"):
        CLMTrainer(
            model=tiny_llama(),
            args=config(tmp_path, alpha=0.0),
            train_dataset=pairs,
            processing_class=tokenizer,
            teacher_model=tiny_llama(seed=1),
        )
    cached = add_teacher_topk(pairs, teacher_topk_logits(tiny_llama(seed=1), pairs, k=3))
    with pytest.raises(ValueError, match="teacher_topk is not set"):
        CLMTrainer(
            model=tiny_llama(), args=config(tmp_path), train_dataset=cached, processing_class=tokenizer
        )
    trainer = CLMTrainer(
        model=tiny_llama(),
        args=config(tmp_path, teacher_topk=4),
        train_dataset=cached,
        processing_class=tokenizer,
    )
    with pytest.raises(ValueError, match="cached teacher top-k has k=3 per token but teacher_topk=4"):
        trainer.train()


def test_nan_loss_stops_with_a_clear_error(tmp_path, tokenizer, blocks):
    model = tiny_llama()
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))
    trainer = CLMTrainer(model=model, args=config(tmp_path), train_dataset=blocks, processing_class=tokenizer)
    with pytest.raises(
        FloatingPointError,
        match=r"loss is nan at step 1: the run diverged \(loss_ce=nan, learning rate .*Lower",
    ):
        trainer.train()


# ---- LoRA and resume -------------------------------------------------------------------------------------


def test_lora_trains_only_the_adapter_and_saves_it(tmp_path, tokenizer, blocks):
    model = tiny_llama()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"
    )
    trainer = CLMTrainer(
        model=model,
        args=config(tmp_path, max_steps=3),
        train_dataset=blocks,
        processing_class=tokenizer,
        peft_config=lora,
    )
    total, trainable = trainer.param_counts["total"], trainer.param_counts["trainable"]
    assert 0 < trainable < total / 10
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "adapter_model.safetensors").exists() and not (tmp_path / "model.safetensors").exists()
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        lora_b = [f.get_tensor(k) for k in f.keys() if "lora_B" in k]  # noqa: SIM118
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: it moved
    base_model = trainer.model.get_base_model()
    assert torch.equal(base_model.model.embed_tokens.weight, base["model.embed_tokens.weight"])
    with pytest.raises(ValueError, match="already a PeftModel"):
        CLMTrainer(
            model=trainer.model,
            args=config(tmp_path),
            train_dataset=blocks,
            processing_class=tokenizer,
            peft_config=lora,
        )


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path, tokenizer, blocks):
    args = {"max_steps": 4, "save_strategy": "steps", "save_steps": 2, "learning_rate": 1e-3}
    full = CLMTrainer(
        model=tiny_llama(),
        args=config(tmp_path / "a", **args),
        train_dataset=blocks,
        processing_class=tokenizer,
    )
    full.train()
    resumed = CLMTrainer(
        model=tiny_llama(seed=5),
        args=config(tmp_path / "b", **args),
        train_dataset=blocks,
        processing_class=tokenizer,
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
