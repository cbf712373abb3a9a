"""recipes/distill.py end to end with tiny models: one process, the teacher-logit cache, two teachers, 2-process
DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, BertTokenizerFast

from hfkit.errors import UserInputError
from hfkit.recipes import distill
from hfkit.trainers.checkpoints import checkpoint_problem
from tests.conftest import REPO, SPECIAL, WORDS, write_tiny_model, write_toy_tsv

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    teacher = write_tiny_model(tmp_path / "teacher", tiny_tokenizer, layers=4)
    train = write_toy_tsv(tmp_path / "train.tsv", 200, seed=1)
    return tmp_path, teacher, train


def distill_args(teacher, train, out, *extra) -> list[str]:
    return [
        "--teacher_name_or_path", str(teacher), "--train_file", str(train),
        "--text_column", "sentence", "--label_column", "sentiment", "--validation_split", "0.2",
        "--output_dir", str(out), "--learning_rate", "1e-3", "--max_steps", "6",
        "--per_device_train_batch_size", "16", "--disable_tqdm", "true", "--save_strategy", "steps",
        "--save_steps", "3", "--eval_strategy", "no", "--keep_checkpoints", "true", *extra,
    ]  # fmt: skip


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def saved_keys(folder) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return set(f.keys())


def test_distill_recipe_student_from_teacher_layers_with_cache_and_augmentation(setup):
    tmp, teacher, train = setup
    out = tmp / "student"
    args = distill_args(
        teacher, train, out, "--student_layers", "0", "2", "--augment_copies", "1",
        "--teacher_logits_cache", str(tmp / "cache"),
    )  # fmt: skip
    result = run([sys.executable, str(REPO / "recipes" / "distill.py"), *args])

    # Student only: 2 layers, no teacher weights, reloadable with the Auto class.
    keys = saved_keys(out)
    assert any(k.startswith("bert.encoder.layer.1.") for k in keys)
    assert not any(k.startswith("bert.encoder.layer.2.") for k in keys)
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and student.config.id2label == {0: "neg", 1: "pos"}

    report = json.loads((out / "distill_report.json").read_text())
    teacher_row, student_row = report["models"]
    assert teacher_row["name"] == "teacher" and student_row["parameters"] < teacher_row["parameters"]
    assert "speed-up" in result.stdout and "teacher-logit cache built" in result.stderr
    # 160 training rows + 1 augmented copy each, scored once by the teacher.
    assert "320 x 2 logits" in result.stderr

    # Same teacher + data + tokenization: the cache is reused, not rebuilt.
    again = run([sys.executable, str(REPO / "recipes" / "distill.py"), *distill_args(
        teacher, train, tmp / "student2", "--student_layers", "0", "2", "--augment_copies", "1",
        "--teacher_logits_cache", str(tmp / "cache"))])  # fmt: skip
    assert "teacher-logit cache hit" in again.stderr

    # Layer transfer runs the teacher in every step, which gives its logits too: no teacher pass first, and the
    # learned projections are not saved with the student.
    layered = run([sys.executable, str(REPO / "recipes" / "distill.py"), *distill_args(
        teacher, train, tmp / "student3", "--student_layers", "0", "2", "--augment_copies", "1",
        "--teacher_logits_cache", str(tmp / "cache"), "--hidden_loss_weight", "0.01")])  # fmt: skip
    assert "teacher-logit cache" not in layered.stderr
    assert not any(k.startswith("distill_projections") for k in saved_keys(tmp / "student3"))


def test_distill_recipe_cross_tokenizer_uses_teacher_tokens(setup, tiny_tokenizer):
    """A student with another vocabulary: logits come from the teacher's own tokenization."""
    tmp, teacher, train = setup
    # Same words, other ids: a different tokenizer for the student.
    other = BertTokenizerFast(vocab={t: i for i, t in enumerate(SPECIAL + list(reversed(WORDS)) + ["extra"])})
    student_dir = write_tiny_model(tmp / "other_student", other, layers=2)
    base = distill_args(teacher, train, tmp / "x", "--student_name_or_path", str(student_dir))
    extra = ["--augment_copies", "1", "--teacher_logits_cache", str(tmp / "cache"), "--teacher_logits_dtype",
             "bfloat16"]  # fmt: skip
    result = run(
        [sys.executable, str(REPO / "recipes" / "distill.py"), *base, "--student_layers", "1", *extra]
    )
    # The student keeps layer 1 of its own model (not of the teacher) and its own tokenizer.
    student = AutoModelForSequenceClassification.from_pretrained(tmp / "x")
    assert student.config.num_hidden_layers == 1 and student.config.vocab_size == len(other)
    # The teacher scored the 160 rows + 160 augmented copies once, in bf16 (float32 training), and cached them.
    assert "320 x 2 logits" in result.stderr
    (cache_file,) = (tmp / "cache").glob("teacher-logits-*.safetensors")
    with safe_open(str(cache_file), "pt") as f:
        assert f.metadata()["autocast_dtype"] == "bfloat16"

    # Hidden-state transfer across the two vocabularies: they cut the text into the same pieces, so the teacher
    # reads the student's batch translated to its own ids.
    other_out = distill_args(teacher, train, tmp / "y", "--student_name_or_path", str(student_dir))
    layered = run(
        [sys.executable, str(REPO / "recipes" / "distill.py"), *other_out, "--hidden_loss_weight", "1"]
    )
    assert "cuts all 160 training rows into the student's pieces" in layered.stderr
    # A student tokenizer that spells 'w3' as 'w' + '##3' does not line up: refused, naming a row.
    split = BertTokenizerFast(
        vocab={t: i for i, t in enumerate(SPECIAL + [w for w in WORDS if w != "w3"] + ["w", "##3"])}
    )
    split_dir = write_tiny_model(tmp / "split_student", split, layers=2)
    failed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "distill.py"),
         *distill_args(teacher, train, tmp / "z", "--student_name_or_path", str(split_dir)), "--hidden_loss_weight", "1"],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert (
        failed.returncode == 2
        and "error: the teacher's tokenizer cuts the training rows into other pieces" in failed.stderr
    )
    assert "student ['w', '##3'" in failed.stderr and "teacher ['w3'" in failed.stderr


def test_two_process_cpu_launch_trains_one_student(setup):
    tmp, teacher, train = setup
    out = tmp / "ddp"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "hfkit" / "accelerate_configs" / "cpu_ddp.yaml"), "--main_process_port", str(free_port()),
        str(REPO / "recipes" / "distill.py"),
        *distill_args(teacher, train, out, "--student_layers", "1", "3", "--teacher_logits_cache", str(tmp / "cache"),
                     "--log_level", "info"),  # Trainer's set-up lines (the global batch size) are INFO
    ]  # fmt: skip
    result = run(cmd)
    log = result.stdout + result.stderr
    # Two processes of 16 rows each: the global batch is 32.
    assert "Total train batch size (w. parallel, distributed & accumulation) = 32" in log
    assert (out / "model.safetensors").exists() and (out / "distill_report.json").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    # Both processes wrote into the temporary folder before the main one renamed it: each RNG state is there.
    assert sorted(p.name for p in (out / "checkpoint-6").glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]
    assert checkpoint_problem(out / "checkpoint-6") is None and not list(out.glob("_tmp-*"))


def test_distill_recipe_two_teachers_with_different_tokenizers(setup, tiny_tokenizer):
    """`teachers`: each teacher reads the text with its own tokenizer once; the student learns their combination."""
    tmp, teacher, train = setup
    other = BertTokenizerFast(vocab={t: i for i, t in enumerate(SPECIAL + list(reversed(WORDS)) + ["extra"])})
    wide = write_tiny_model(tmp / "teacher_wide", other, layers=2, hidden=48)  # another shape and vocabulary
    base = [
        "--teachers", str(teacher), str(wide), "--student_layers", "0", "2", "--train_file", str(train),
        "--text_column", "sentence", "--label_column", "sentiment", "--validation_split", "0.2",
        "--learning_rate", "1e-3", "--max_steps", "3", "--per_device_train_batch_size", "16",
        "--logging_steps", "1", "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no",
        "--teacher_logits_cache", str(tmp / "cache"),
    ]  # fmt: skip
    trainer = distill.main([*base, "--output_dir", str(tmp / "pair"), "--teacher_combination", "gold"])

    # Both teachers scored the 160 training rows once each (one cache file each); no teacher runs in training.
    assert len(list((tmp / "cache").glob("teacher-logits-*.safetensors"))) == 2
    assert trainer.teacher_plan == [("cached", 0), ("cached", 1)] and trainer.teacher_model is None
    assert torch.tensor(trainer.train_dataset[0]["teacher_logits"]).shape == (2, 2)
    logged = next(e for e in trainer.state.log_history if "loss" in e)
    assert {"loss_soft", "loss_hard", "loss_soft_teacher0", "loss_soft_teacher1"} <= set(logged)
    report = json.loads((tmp / "pair" / "distill_report.json").read_text())
    assert [r["name"] for r in report["models"]] == ["teacher0", "teacher1", "student"]
    assert report["teacher"] == [str(teacher), str(wide)]
    student = AutoModelForSequenceClassification.from_pretrained(tmp / "pair")
    assert student.config.num_hidden_layers == 2 and student.config.vocab_size == len(tiny_tokenizer)

    # Checked before any model is loaded: one weight per teacher; layer losses take one teacher.
    with pytest.raises(UserInputError, match="1 values for 2 teachers"):
        distill.main([*base, "--output_dir", str(tmp / "w"), "--teacher_combination", "weighted",
                      "--teacher_weights", "1"])  # fmt: skip
    with pytest.raises(UserInputError, match="2 teachers are given: set hidden_loss_weight=0"):
        distill.main([*base, "--output_dir", str(tmp / "h"), "--hidden_loss_weight", "1"])
    # Every teacher's label set must be the data's.
    three = write_tiny_model(tmp / "teacher_3", tiny_tokenizer, num_labels=3, id2label={0: "neg", 1: "pos", 2: "x"},
                             label2id={"neg": 0, "pos": 1, "x": 2})  # fmt: skip
    bad = [*base, "--output_dir", str(tmp / "l")]
    bad[bad.index(str(wide))] = str(three)
    with pytest.raises(UserInputError, match="teacher_3 predicts labels.*fine-tune the teacher on this data"):
        distill.main(bad)
