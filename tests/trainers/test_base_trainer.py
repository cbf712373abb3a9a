"""What the three trainers share through BaseConfig / BaseTrainer: one config check, early stopping, logging."""

from __future__ import annotations

import pytest
import torch
from transformers import EarlyStoppingCallback, TrainingArguments

from hfkit import ClassifierConfig, ClassifierTrainer, CLMConfig, CLMTrainer, DistillConfig, DistillTrainer
from hfkit.trainers.base_config import BaseConfig
from hfkit.trainers.base_trainer import BaseTrainer
from tests.conftest import toy_dataset


@pytest.mark.parametrize("config", [ClassifierConfig, DistillConfig, CLMConfig])
def test_every_config_extends_the_base(config, tmp_path):
    args = config(output_dir=str(tmp_path))
    assert isinstance(args, BaseConfig)
    assert args.lr_scheduler_type == "cosine" and args.max_grad_norm == 1.0


@pytest.mark.parametrize("trainer", [ClassifierTrainer, DistillTrainer, CLMTrainer])
def test_every_trainer_extends_the_base_and_refuses_plain_arguments(trainer, tmp_path, tiny_bert):
    assert issubclass(trainer, BaseTrainer)
    with pytest.raises(TypeError, match=f"args must be a {trainer.config_class.__name__}"):
        trainer(model=tiny_bert, args=TrainingArguments(output_dir=str(tmp_path)))


def test_early_stopping_for_causal_lms_watches_the_loss(tmp_path):
    args = CLMConfig(output_dir=str(tmp_path), early_stopping_patience=2, eval_strategy="steps", eval_steps=5)
    assert args.load_best_model_at_end and args.metric_for_best_model == "loss"
    assert args.greater_is_better is False
    assert args.save_strategy == "steps" and args.save_steps == 5


def test_early_stopping_callback_added_to_the_callers(tmp_path, tiny_bert, tiny_tokenizer):
    args = ClassifierConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", early_stopping_patience=3
    )
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=args,
        train_dataset=toy_dataset(tiny_tokenizer, 8),
        eval_dataset=toy_dataset(tiny_tokenizer, 8),
    )
    stoppers = [c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    assert [c.early_stopping_patience for c in stoppers] == [3]


def test_loss_parts_are_weighted_means_since_the_last_log(tmp_path, tiny_bert, tiny_tokenizer):
    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=ClassifierConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no"),
        train_dataset=toy_dataset(tiny_tokenizer, 8),
    )
    trainer._log_loss_part("soft", torch.tensor(1.0))
    trainer._log_loss_part("soft", torch.tensor(3.0), weight=3.0)
    trainer._log_loss_part("hard", torch.tensor(5.0), weight=0.0)
    logs = {"loss": 0.5}
    trainer.log(logs)
    # (1 * 1 + 3 * 3) / 4; a component whose weights sum to 0 is left out.
    assert logs["loss_soft"] == pytest.approx(2.5) and "loss_hard" not in logs
    assert not trainer._loss_parts
