"""Training curves written at the end of every run, and `report_to: tensorboard` offline."""

from __future__ import annotations

import math

import pytest
from matplotlib.image import imread

from hfkit import ClassifierConfig, ClassifierTrainer, DistillConfig, DistillTrainer
from hfkit.trainers.callbacks import CURVES_FILE, curve_series, plot_training_curves
from tests.conftest import toy_dataset

HISTORY = [
    {"loss": 0.9, "loss_soft": 0.5, "loss_hard": 1.3, "grad_norm": 2.0, "learning_rate": 1e-3, "step": 1},
    {"loss": 0.7, "loss_soft": 0.4, "loss_hard": 1.0, "grad_norm": 1.0, "learning_rate": 1e-3, "step": 2},
    {
        "eval_loss": 0.8,
        "eval_accuracy": 0.6,
        "eval_f1": 0.5,
        "eval_runtime": 0.1,
        "eval_samples_per_second": 9.0,
        "epoch": 1.0,
        "step": 2,
    },
    {"train_runtime": 1.0, "train_loss": 0.8, "epoch": 1.0, "step": 2},
]


def test_curve_series_holds_every_loss_component_and_each_metric():
    losses, metrics = curve_series(HISTORY)
    assert losses == {
        "loss": [(1, 0.9), (2, 0.7)],
        "loss_soft": [(1, 0.5), (2, 0.4)],
        "loss_hard": [(1, 1.3), (2, 1.0)],
        "eval_loss": [(2, 0.8)],
    }
    assert metrics == {"accuracy": [(2, 0.6)], "f1": [(2, 0.5)]}  # timings are not metrics


def test_plot_has_a_panel_per_kind_and_survives_nan(tmp_path):
    both = plot_training_curves(HISTORY, str(tmp_path / "both.png"))
    assert imread(both).shape[1] == 1200  # two 6-inch panels at 100 dpi
    train_only = plot_training_curves(HISTORY[:2] + [{"loss": math.nan, "step": 3}], str(tmp_path / "t.png"))
    assert imread(train_only).shape[1] == 600
    assert plot_training_curves([{"train_runtime": 1.0, "step": 0}], str(tmp_path / "none.png")) is None


def run_args(tmp_path, **overrides) -> dict:
    values = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        max_steps=4,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        seed=0,
    )
    values.update(overrides)
    return values


def distill_data(tokenizer, n: int):
    data = toy_dataset(tokenizer, n)
    return data.add_column("teacher_logits", [[2.0, -2.0] if y == 0 else [-2.0, 2.0] for y in data["labels"]])


def test_every_run_writes_its_curves(tmp_path, tiny_bert, tiny_tokenizer):
    trainer = DistillTrainer(
        model=tiny_bert,
        args=DistillConfig(**run_args(tmp_path)),
        train_dataset=distill_data(tiny_tokenizer, 32),
        eval_dataset=toy_dataset(tiny_tokenizer, 16, seed=3),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    path = tmp_path / "out" / CURVES_FILE
    assert imread(str(path)).shape[1] == 1200  # losses and validation metrics
    losses, metrics = curve_series(trainer.state.log_history)
    assert {"loss", "loss_soft", "loss_hard", "eval_loss"} <= set(losses) and "accuracy" in metrics
    assert len(metrics["accuracy"]) == 2  # one point per evaluation

    off = tmp_path / "off"
    ClassifierTrainer(
        model=tiny_bert,
        args=ClassifierConfig(**run_args(off, eval_strategy="no", plot_curves=False)),
        train_dataset=toy_dataset(tiny_tokenizer, 16),
        processing_class=tiny_tokenizer,
    ).train()
    assert not (off / "out" / CURVES_FILE).exists()


def test_report_to_tensorboard_writes_event_files_offline(tmp_path, tiny_bert, tiny_tokenizer):
    pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = DistillTrainer(
        model=tiny_bert,
        args=DistillConfig(**run_args(tmp_path, report_to=["tensorboard"])),
        train_dataset=distill_data(tiny_tokenizer, 32),
        eval_dataset=toy_dataset(tiny_tokenizer, 16, seed=3),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    events = list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))
    assert events
    accumulator = EventAccumulator(str(events[0].parent)).Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/loss_soft", "train/loss_hard", "eval/accuracy"} <= tags
    assert len(accumulator.Scalars("train/loss_soft")) == 4  # logged every step
