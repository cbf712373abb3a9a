"""What the three trainers share through BaseConfig / BaseTrainer: one config check, early stopping, logging."""

from __future__ import annotations

import sys

import pytest
import torch
from datasets import ClassLabel, Dataset, Value
from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments

from hfkit import ClassifierConfig, ClassifierTrainer, CLMConfig, CLMTrainer, DistillConfig, DistillTrainer
from hfkit.errors import UserInputError
from hfkit.trainers.base_config import BaseConfig
from hfkit.trainers.base_trainer import BaseTrainer
from hfkit.trainers.callbacks import DivergenceError
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


# ---- config values that would train nothing, crash late or diverge at once (issue 12) ---------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"num_train_epochs": -1, "max_steps": -1},
            "nothing to train: num_train_epochs is -1 and max_steps is -1",
        ),
        ({"num_train_epochs": 0}, "Set num_train_epochs > 0"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size must be >= 1, got 0"),
        ({"per_device_eval_batch_size": 0}, "per_device_eval_batch_size must be >= 1"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be >= 1"),
        ({"learning_rate": 1e6}, "learning_rate 1000000.0 is outside .*Set e.g. learning_rate 5e-5"),
        ({"learning_rate": -1e-5}, "learning_rate -1e-05 is outside"),
    ],
)
@pytest.mark.parametrize("config", [ClassifierConfig, DistillConfig, CLMConfig])
def test_config_refuses_values_that_cannot_train(config, overrides, message, tmp_path):
    with pytest.raises(UserInputError, match=message):
        config(output_dir=str(tmp_path), **overrides)


def test_config_still_trains_by_steps_alone(tmp_path):
    assert ClassifierConfig(output_dir=str(tmp_path), num_train_epochs=0, max_steps=5).max_steps == 5


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("not a folder")
    with pytest.raises(UserInputError, match="output_dir .*results.txt' is a file, not a folder"):
        ClassifierConfig(output_dir=str(path))


# ---- data the trainer cannot use (issue 12) ----------------------------------------------------------------


def test_untokenized_dataset_is_one_clear_error(tmp_path, tiny_bert):
    raw = Dataset.from_dict({"text": ["good w1", "bad w2"], "labels": [1, 0]})
    args = ClassifierConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no")
    with pytest.raises(
        UserInputError, match=r"train_dataset has columns \['text', 'labels'\] but no 'input_ids'"
    ):
        ClassifierTrainer(model=tiny_bert, args=args, train_dataset=raw)
    with pytest.raises(UserInputError, match="eval_dataset.*not tokenized"):
        CLMTrainer(
            model=tiny_bert, args=CLMConfig(output_dir=str(tmp_path), report_to="none"), eval_dataset=raw
        )


def test_more_classes_than_the_model_has_labels_is_one_clear_error(tmp_path, tiny_bert, tiny_tokenizer):
    data = toy_dataset(tiny_tokenizer, 12).cast_column("labels", Value("int64"))
    data = data.map(lambda row, i: {"labels": i % 3}, with_indices=True)  # ids 0, 1, 2 for a 2-label model
    args = ClassifierConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no")
    with pytest.raises(UserInputError, match=r"train_dataset has label ids \[2\] .*num_labels=3"):
        ClassifierTrainer(model=tiny_bert, args=args, train_dataset=data)
    named = toy_dataset(tiny_tokenizer, 12).cast_column("labels", ClassLabel(names=["bad", "good", "meh"]))
    with pytest.raises(UserInputError, match=r"eval_dataset has 3 classes \(\['bad', 'good', 'meh'\]\)"):
        ClassifierTrainer(
            model=tiny_bert, args=args, train_dataset=toy_dataset(tiny_tokenizer, 8), eval_dataset=named
        )
    # Rows without a gold label (-100, e.g. augmented copies) are fine.
    unlabeled = data.map(lambda row: {"labels": -100 if row["labels"] == 2 else row["labels"]})
    ClassifierTrainer(model=tiny_bert, args=args, train_dataset=unlabeled)


# ---- divergence (issue 12 item 3, issue 14: no host sync per step) -----------------------------------------


class NaNFromStep(ClassifierTrainer):
    """A classifier whose loss turns NaN from optimizer step `bad_step` on (1-based, as logged)."""

    bad_step = 3

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training and self.state.global_step + 1 >= self.bad_step:
            loss = loss * float("nan")
        return loss


def guard_args(tmp_path, **overrides) -> ClassifierConfig:
    values = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        learning_rate=1e-3,
        per_device_train_batch_size=4,
        max_steps=6,
        logging_steps=1,
        eval_strategy="no",
        save_strategy="steps",
        save_steps=1,
        save_total_limit=None,
        seed=0,
    )
    values.update(overrides)
    return ClassifierConfig(**values)


def test_nan_loss_stops_before_a_checkpoint_and_names_step_and_learning_rate(
    tmp_path, tiny_bert, tiny_tokenizer
):
    trainer = NaNFromStep(
        model=tiny_bert,
        args=guard_args(tmp_path),
        train_dataset=toy_dataset(tiny_tokenizer, 32),
        processing_class=tiny_tokenizer,
    )
    with pytest.raises(DivergenceError) as caught:
        trainer.train()
    message = str(caught.value)
    assert "the training loss is nan at step 3" in message and "learning rate" in message
    assert "checkpoint-2 (last logged loss" in message and "last good" not in message
    saved = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("checkpoint-"))
    assert saved == ["checkpoint-1", "checkpoint-2"]  # nothing saved from the diverged step on
    assert isinstance(caught.value, FloatingPointError)  # what callers caught before


def test_nan_component_is_named(tmp_path, tiny_bert, tiny_tokenizer):
    data = toy_dataset(tiny_tokenizer, 16)
    logits = [[float("nan"), 0.0] if i == 5 else [1.0, -1.0] for i in range(len(data))]
    data = data.add_column("teacher_logits", logits)
    args = DistillConfig(**{**guard_args(tmp_path).to_dict(), "save_strategy": "no", "logging_steps": 100})
    trainer = DistillTrainer(model=tiny_bert, args=args, train_dataset=data, processing_class=tiny_tokenizer)
    with pytest.raises(DivergenceError, match=r"\(loss_hard=[0-9.]+, loss_soft=nan, learning rate"):
        trainer.train()


def test_weights_that_turned_nan_are_never_checkpointed(tmp_path, tiny_bert, tiny_tokenizer):
    class PoisonAtStep2(TrainerCallback):
        def on_optimizer_step(self, args, state, control, **kwargs):
            if state.global_step == 1:  # during step 2: its loss was finite, its update is not
                with torch.no_grad():
                    tiny_bert.classifier.bias.fill_(float("inf"))

    trainer = ClassifierTrainer(
        model=tiny_bert,
        args=guard_args(tmp_path, logging_steps=100),
        train_dataset=toy_dataset(tiny_tokenizer, 32),
        processing_class=tiny_tokenizer,
        callbacks=[PoisonAtStep2()],
    )
    with pytest.raises(
        DivergenceError, match=r"the weights became NaN/inf \(1 tensors, e.g. classifier.bias\) at step 2"
    ):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-1"
    ]


def test_guard_adds_no_host_sync_per_step(tmp_path, tiny_bert, tiny_tokenizer, monkeypatch):
    """hfkit's own host reads (.item(), bool of a tensor) do not grow with the number of steps."""

    def reads(max_steps: int) -> int:
        count = 0
        item, as_bool = torch.Tensor.item, torch.Tensor.__bool__

        def counted(original):
            def read(self):
                nonlocal count
                # Only reads made by hfkit's code: the model's own (e.g. SDPA mask checks) are not ours.
                count += "/hfkit/" in sys._getframe(1).f_code.co_filename
                return original(self)

            return read

        args = guard_args(
            tmp_path,
            max_steps=max_steps,
            logging_steps=1000,
            save_strategy="no",
            logging_nan_inf_filter=False,
        )
        trainer = ClassifierTrainer(
            model=tiny_bert,
            args=args,
            train_dataset=toy_dataset(tiny_tokenizer, 64),
            processing_class=tiny_tokenizer,
        )
        with monkeypatch.context() as patch:
            patch.setattr(torch.Tensor, "item", counted(item))
            patch.setattr(torch.Tensor, "__bool__", counted(as_bool))
            trainer.train()
        return count

    assert reads(8) == reads(4) > 0  # > 0: the end-of-training check did read


def test_incremental_trainer_takes_only_its_own_config(tmp_path, tiny_bert):
    from hfkit.trainers.incremental_trainer import IncrementalTrainer

    with pytest.raises(TypeError, match="args must be an IncrementalConfig, got DistillConfig"):
        IncrementalTrainer(model=tiny_bert, args=DistillConfig(output_dir=str(tmp_path)))


def test_bf16_defaults_on_where_the_cpu_runs_it_natively(tmp_path, monkeypatch):
    """Unset bf16 turns on with AVX512-BF16 / AMX (use_cpu with it, as Trainer needs), stays off on other CPUs
    (emulated bf16 is slower), and an explicit value or HFKIT_AUTO_BF16=0 wins."""
    from hfkit.trainers import base_config

    monkeypatch.setenv("HFKIT_AUTO_BF16", "1")
    out = str(tmp_path)
    monkeypatch.setattr(base_config, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_bf16"})
    if not torch.accelerator.is_available():
        config = ClassifierConfig(output_dir=out)
        assert config.bf16 is True and config.use_cpu is True
    assert ClassifierConfig(output_dir=out, use_cpu=True).bf16 is True
    assert ClassifierConfig(output_dir=out, use_cpu=True, bf16=False).bf16 is False
    monkeypatch.setattr(base_config, "cpu_flags", lambda: {"avx512f", "avx2"})
    assert ClassifierConfig(output_dir=out, use_cpu=True).bf16 is False
    monkeypatch.setattr(base_config, "cpu_flags", lambda: {"amx_bf16"})
    monkeypatch.setenv("HFKIT_AUTO_BF16", "0")
    assert ClassifierConfig(output_dir=out, use_cpu=True).bf16 is False


def test_unwrapped_drops_the_mixed_precision_wrapper(tmp_path, tiny_bert, tiny_tokenizer):
    """After bf16 training, accelerate leaves autocast on the model's forward; `unwrapped()` is the model as
    loaded from output_dir (float32), which reports time and score."""
    from transformers import AutoModelForSequenceClassification

    data = toy_dataset(tiny_tokenizer, 16)
    args = ClassifierConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=True, max_steps=1, per_device_train_batch_size=8,
        report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=tiny_bert, args=args, train_dataset=data, processing_class=tiny_tokenizer
    )
    trainer.train()
    trainer.save_model()
    batch = trainer.data_collator([data[i] for i in range(8)])
    batch = {k: v for k, v in batch.items() if k != "labels"}
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    plain = trainer.unwrapped().eval()
    with torch.no_grad():
        expected = reloaded(**batch).logits
        torch.testing.assert_close(plain(**batch).logits, expected)
