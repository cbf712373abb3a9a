"""teacher_logits_cache / teacher_logits_dtype honoured by the trainers used from Python (no recipe).

Given a teacher, a tokenized training set without cached columns and args.teacher_logits_cache, DistillTrainer,
IncrementalTrainer and CLMTrainer compute the teacher's outputs once (or load them) and train without running it.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch
from datasets import Dataset
from safetensors import safe_open
from transformers import BertForSequenceClassification

from hfkit.data.lm import TOPK_VALUES, LMDataArguments, build_lm_dataset
from hfkit.teacher_cache import TEACHER_LOGITS_COLUMN, TeacherCacheArguments
from hfkit.trainers.clm_config import CLMConfig
from hfkit.trainers.clm_trainer import CLMTrainer
from hfkit.trainers.distill_config import DistillConfig
from hfkit.trainers.distill_trainer import TEACHER_LOGITS, DistillTrainer
from hfkit.trainers.incremental_config import IncrementalConfig
from hfkit.trainers.incremental_trainer import IncrementalTrainer
from tests.conftest import tiny_bert_config, toy_dataset
from tests.unit.data.test_lm import tiny_llama, word_tokenizer

COMMON = {
    "use_cpu": True,
    "report_to": "none",
    "disable_tqdm": True,
    "max_steps": 3,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_steps": 1,
    "seed": 0,
    "data_seed": 0,
    "plot_curves": False,
}


# Tiny models: one thread is faster than several and is not slowed down by other jobs (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def classifier(tokenizer, seed: int, num_labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    names = ["bad", "good", "meh"][:num_labels]
    return BertForSequenceClassification(
        tiny_bert_config(tokenizer, num_labels, id2label=dict(enumerate(names)))
    )


def count_forwards(model: torch.nn.Module) -> list[int]:
    calls = [0]

    def hook(*_):
        calls[0] += 1

    model.register_forward_hook(hook)
    return calls


def cache_files(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith(".safetensors")]


def test_the_settings_have_one_home_and_keep_their_keys():
    # One dataclass, inherited by both configs; the old import of the column constant still works.
    assert issubclass(DistillConfig, TeacherCacheArguments) and issubclass(CLMConfig, TeacherCacheArguments)
    assert TEACHER_LOGITS == TEACHER_LOGITS_COLUMN == "teacher_logits"
    with pytest.raises(ValueError, match="teacher_logits_dtype must be one of"):
        CLMConfig(output_dir="x", teacher_logits_dtype="bf16")


def test_distill_trainer_fills_and_reuses_the_cache_and_never_runs_the_teacher_per_step(
    tiny_tokenizer, tmp_path, caplog
):
    train = toy_dataset(tiny_tokenizer, 24, seed=3)
    teacher = classifier(tiny_tokenizer, seed=1)
    calls = count_forwards(teacher)
    cache = tmp_path / "cache"

    def run(name: str) -> DistillTrainer:
        args = DistillConfig(output_dir=str(tmp_path / name), teacher_logits_cache=str(cache), **COMMON)
        return DistillTrainer(
            model=classifier(tiny_tokenizer, seed=2),
            teacher_model=teacher,
            args=args,
            train_dataset=train,
            processing_class=tiny_tokenizer,
            teacher_processing_class=tiny_tokenizer,
        )

    with caplog.at_level(logging.INFO, logger="hfkit"):
        first = run("first")
    assert calls[0] > 0 and "teacher-logit cache built" in caplog.text  # the one teacher pass, at set-up
    assert len(cache_files(cache)) == 1
    assert first.teacher_model is None and TEACHER_LOGITS_COLUMN in first.train_dataset.column_names
    calls[0] = 0
    first.train()
    assert first.state.global_step == 3 and calls[0] == 0  # trained from the cached logits
    assert "loss_soft" in next(e for e in first.state.log_history if "loss" in e)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hfkit"):
        second = run("second")
        second.train()
    assert calls[0] == 0 and "teacher-logit cache hit" in caplog.text
    torch.testing.assert_close(
        torch.tensor(second.train_dataset[TEACHER_LOGITS_COLUMN]),
        torch.tensor(first.train_dataset[TEACHER_LOGITS_COLUMN]),
    )


def test_without_a_cache_folder_the_teacher_runs_in_every_step(tiny_tokenizer, tmp_path):
    # The control of the test above: the forward counter does see an online teacher.
    teacher = classifier(tiny_tokenizer, seed=1)
    calls = count_forwards(teacher)
    trainer = DistillTrainer(
        model=classifier(tiny_tokenizer, seed=2),
        teacher_model=teacher,
        args=DistillConfig(output_dir=str(tmp_path), **COMMON),
        train_dataset=toy_dataset(tiny_tokenizer, 24, seed=3),
        processing_class=tiny_tokenizer,
    )
    assert calls[0] == 0
    trainer.train()
    assert calls[0] == 3


def test_incremental_trainer_caches_the_previous_models_logits_at_teacher_logits_dtype(
    tiny_tokenizer, tmp_path
):
    previous = classifier(tiny_tokenizer, seed=1)
    calls = count_forwards(previous)
    args = IncrementalConfig(
        output_dir=str(tmp_path / "out"),
        teacher_logits_cache=str(tmp_path / "cache"),
        teacher_logits_dtype="bfloat16",
        **COMMON,
    )
    trainer = IncrementalTrainer(
        model=classifier(tiny_tokenizer, seed=2, num_labels=3),
        teacher_model=previous,
        args=args,
        train_dataset=toy_dataset(tiny_tokenizer, 24, seed=3),
        processing_class=tiny_tokenizer,
    )
    assert trainer.num_old_classes == 2 and len(trainer.train_dataset[0][TEACHER_LOGITS_COLUMN]) == 2
    (path,) = cache_files(tmp_path / "cache")
    with safe_open(str(tmp_path / "cache" / path), framework="pt") as f:
        assert f.metadata()["autocast_dtype"] == "bfloat16"  # the recipe used to drop this setting
    calls[0] = 0
    trainer.train()
    assert calls[0] == 0


def test_clm_trainer_fills_and_reuses_the_topk_cache(tmp_path, caplog):
    tokenizer = word_tokenizer()
    docs = Dataset.from_dict({"text": ["the cat sat on the mat w1 w2 w3 w4 w5 w6"] * 16})
    blocks = build_lm_dataset(docs, tokenizer, LMDataArguments(train_file="x.txt"), block_size=16)
    teacher = tiny_llama(layers=3, seed=1)
    calls = count_forwards(teacher)

    def run(name: str) -> CLMTrainer:
        args = CLMConfig(
            output_dir=str(tmp_path / name),
            teacher_logits_cache=str(tmp_path / "cache"),
            teacher_topk=4,
            block_size=16,
            **COMMON,
        )
        return CLMTrainer(
            model=tiny_llama(seed=2),
            args=args,
            train_dataset=blocks,
            processing_class=tokenizer,
            teacher_model=teacher,
        )

    first = run("first")
    assert calls[0] > 0 and first.teacher_model is None and TOPK_VALUES in first.train_dataset.column_names
    calls[0] = 0
    first.train()
    assert calls[0] == 0 and "loss_kd" in next(e for e in first.state.log_history if "loss" in e)
    with caplog.at_level(logging.INFO, logger="hfkit"):
        run("second").train()
    assert calls[0] == 0 and "teacher top-k cache hit" in caplog.text
